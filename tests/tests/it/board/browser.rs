//! A real headless Chromium, driven over WebDriver (chromedriver + fantoccini), for the board.
//!
//! Both come from the OS packages (`chromium`, `chromium-driver`; scripts/test.sh installs them):
//! nothing is downloaded at run time. The browser runs headless with its own throwaway profile
//! and is closed, with its driver, when the test ends.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use harness::process::free_port;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Where Debian puts them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser window on one page.
pub struct Browser {
    pub client: Client,
    driver: Child,
    closed: bool,
}

impl Browser {
    /// Start chromedriver and a headless Chromium with a tall window (the whole board fits).
    ///
    /// # Errors
    /// Chromium or chromedriver missing (run scripts/test.sh, which installs them) or not
    /// answering.
    pub async fn start() -> anyhow::Result<Self> {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            anyhow::ensure!(
                Path::new(binary).exists(),
                "{binary} not found: apt-get install -y chromium chromium-driver (scripts/test.sh does)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver")?;
        let url = format!("http://127.0.0.1:{port}");
        harness::eventually(
            "chromedriver listening",
            Duration::from_secs(20),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        )
        .await?;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1400,1750",
                    "--hide-scrollbars",
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .context("starting a Chromium session")?;
        Ok(Self {
            client,
            driver,
            closed: false,
        })
    }

    /// Open `url` and wait until the board's live stream is connected.
    ///
    /// # Errors
    /// The page did not load or never went live.
    pub async fn open_board(&self, url: &str) -> anyhow::Result<()> {
        self.client.goto(url).await?;
        self.until(
            "the page's live stream",
            Duration::from_secs(20),
            "document.body.dataset.live === 'yes' ? true : null",
        )
        .await?;
        Ok(())
    }

    /// Evaluate a JS expression (its value is returned to the test).
    ///
    /// # Errors
    /// The script failed.
    pub async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        Ok(self
            .client
            .execute(&format!("return ({expression});"), vec![])
            .await?)
    }

    /// Poll a JS expression until it gives something other than `null`/`false`; every poll also
    /// checks the invariant lights when `watch_lights` is on, and fails at once on a red one.
    ///
    /// # Errors
    /// The deadline passed, or (watching) an invariant light turned red.
    pub async fn until(
        &self,
        what: &str,
        timeout: Duration,
        expression: &str,
    ) -> anyhow::Result<Value> {
        self.poll(what, timeout, expression, false).await
    }

    /// [`Browser::until`], failing as soon as any invariant light on the page is red.
    ///
    /// # Errors
    /// The deadline passed, or an invariant light turned red.
    pub async fn until_green(
        &self,
        what: &str,
        timeout: Duration,
        expression: &str,
    ) -> anyhow::Result<Value> {
        self.poll(what, timeout, expression, true).await
    }

    async fn poll(
        &self,
        what: &str,
        timeout: Duration,
        expression: &str,
        watch_lights: bool,
    ) -> anyhow::Result<Value> {
        let script = format!(
            "const red = [...document.querySelectorAll('[data-rule][data-state=\"red\"]')].map(l => l.textContent); \
             return {{ red, value: ({expression}) }};"
        );
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.client.execute(&script, vec![]).await?;
            if watch_lights && let Some(red) = seen["red"].as_array().filter(|r| !r.is_empty()) {
                bail!("while waiting for {what}: an invariant light is red: {red:?}");
            }
            let value = seen["value"].clone();
            if !value.is_null() && value != Value::Bool(false) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what} ({expression})");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Click the element `css` names.
    ///
    /// # Errors
    /// No such element, or it cannot be clicked.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))?
            .click()
            .await
            .with_context(|| format!("cannot click {css}"))?;
        Ok(())
    }

    /// Replace the value of the input `css` names.
    ///
    /// # Errors
    /// No such element.
    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let input = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))?;
        input.clear().await?;
        input.send_keys(value).await?;
        Ok(())
    }

    /// Save a screenshot of the window as `name`.png under `dir` and check it shows something:
    /// a page that failed to render is one flat colour.
    ///
    /// # Errors
    /// The screenshot failed, could not be written, or is blank.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png)?;
        let colours = distinct_colours(&png)?;
        anyhow::ensure!(
            colours >= 50,
            "{} looks blank: {colours} distinct colours",
            path.display()
        );
        Ok(path)
    }

    /// Close the browser and its driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
        self.closed = true;
    }
}

impl Drop for Browser {
    /// A test that panicked never reached [`Browser::close`]: killing chromedriver alone would
    /// leave its Chromium running, so stop the browsers it started first (Chromium takes its
    /// own helper processes down with it on SIGTERM).
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Some(driver) = self.driver.id() {
            for pid in children_of(driver) {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
            }
        }
        let _ = self.driver.start_kill();
    }
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The parent pid is the second field after the parenthesised name.
                    let after = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
                    after.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// How many distinct colours a PNG has (sampling every 3rd pixel of every 3rd row).
fn distinct_colours(png_bytes: &[u8]) -> anyhow::Result<usize> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info()?;
    let mut buffer = vec![0; reader.output_buffer_size().context("PNG too large")?];
    let frame = reader.next_frame(&mut buffer)?;
    let channels = frame.color_type.samples();
    let row = frame.line_size;
    let mut colours = std::collections::HashSet::new();
    for y in (0..frame.height as usize).step_by(3) {
        for x in (0..frame.width as usize).step_by(3) {
            let at = y * row + x * channels;
            colours.insert(buffer[at..at + channels.min(3)].to_vec());
        }
    }
    Ok(colours.len())
}

#[test]
fn a_flat_image_is_blank_and_a_busy_one_is_not() {
    let encode = |pixel: &dyn Fn(u32, u32) -> [u8; 3]| {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, 60, 60);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        let data: Vec<u8> = (0..60 * 60).flat_map(|i| pixel(i % 60, i / 60)).collect();
        writer.write_image_data(&data).unwrap();
        drop(writer);
        out
    };
    assert_eq!(
        distinct_colours(&encode(&|_, _| [255, 255, 255])).unwrap(),
        1
    );
    let busy = encode(&|x, y| [(x * 4) as u8, (y * 4) as u8, 90]);
    assert!(distinct_colours(&busy).unwrap() >= 50);
}
