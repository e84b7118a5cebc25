//! The page: one HTML file, one stylesheet and a few JavaScript modules (the entry module and
//! one per panel), embedded in the binary at build time. No build step and no CDN: what is in
//! `assets/` is what the browser runs, offline too.

use saga_platform::service::http::ApiError;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

const INDEX: &str = include_str!("../assets/index.html");
const STYLE: &str = include_str!("../assets/board.css");

/// Every script the page loads, by its path under `/assets/`: the entry module first.
const SCRIPTS: [(&str, &str); 18] = [
    ("board.js", include_str!("../assets/board.js")),
    ("js/types.js", include_str!("../assets/js/types.js")),
    ("js/dom.js", include_str!("../assets/js/dom.js")),
    ("js/api.js", include_str!("../assets/js/api.js")),
    ("js/status.js", include_str!("../assets/js/status.js")),
    ("js/queues.js", include_str!("../assets/js/queues.js")),
    ("js/orders.js", include_str!("../assets/js/orders.js")),
    ("js/journey.js", include_str!("../assets/js/journey.js")),
    ("js/stock.js", include_str!("../assets/js/stock.js")),
    ("js/dlq.js", include_str!("../assets/js/dlq.js")),
    (
        "js/invariants.js",
        include_str!("../assets/js/invariants.js"),
    ),
    ("js/drills.js", include_str!("../assets/js/drills.js")),
    ("js/faults.js", include_str!("../assets/js/faults.js")),
    ("js/activity.js", include_str!("../assets/js/activity.js")),
    ("js/actions.js", include_str!("../assets/js/actions.js")),
    ("js/waterfall.js", include_str!("../assets/js/waterfall.js")),
    ("js/catalog.js", include_str!("../assets/js/catalog.js")),
    ("js/alerts.js", include_str!("../assets/js/alerts.js")),
];

/// `GET /`, `GET /assets/board.css` and `GET /assets/<script>` (404 for any other).
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let index = warp::path::end()
        .and(warp::get())
        .map(|| file(INDEX, "text/html; charset=utf-8"));
    let style = warp::path!("assets" / "board.css")
        .and(warp::get())
        .map(|| file(STYLE, "text/css; charset=utf-8"));
    let script = warp::path("assets")
        .and(warp::path::tail())
        .and(warp::get())
        .map(|tail: warp::path::Tail| match script(tail.as_str()) {
            Some(body) => file(body, "text/javascript; charset=utf-8"),
            None => ApiError::not_found(format!("no asset {:?}", tail.as_str())).into_response(),
        });
    index.or(style).unify().or(script).unify()
}

fn script(path: &str) -> Option<&'static str> {
    SCRIPTS
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, body)| *body)
}

fn file(body: &'static str, content_type: &'static str) -> Response {
    let reply = warp::reply::with_header(body, "content-type", content_type);
    // The page and the binary go together: a new build must not meet a cached script.
    warp::reply::with_header(reply, "cache-control", "no-store").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX.contains(r#"src="/assets/board.js""#));
        assert!(INDEX.contains(r#"href="/assets/board.css""#));
        let scripts = SCRIPTS.iter().map(|(_, body)| *body);
        for asset in [INDEX, STYLE].into_iter().chain(scripts) {
            // The SVG namespace is a name, not a place the browser goes to.
            let asset = asset.replace("http://www.w3.org/2000/svg", "");
            assert!(!asset.contains("http://"), "no remote resource");
            assert!(!asset.contains("https://"), "no remote resource");
            assert!(!asset.contains("//cdn"), "no CDN");
        }
    }

    #[test]
    fn every_module_the_page_imports_is_served_and_type_checked() {
        for (name, body) in SCRIPTS {
            assert!(
                body.starts_with("// @ts-check"),
                "{name} starts with // @ts-check"
            );
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let Some(from) = line.rsplit('\'').nth(1) else {
                    continue;
                };
                let dir = name.rsplit_once('/').map_or("", |(dir, _)| dir);
                let target = match from.strip_prefix("./") {
                    Some(rest) if dir.is_empty() => rest.to_owned(),
                    Some(rest) => format!("{dir}/{rest}"),
                    None => from.to_owned(),
                };
                assert!(
                    script(&target).is_some(),
                    "{name} imports {from}, not served"
                );
            }
        }
    }

    #[test]
    fn no_order_status_is_written_in_the_page() {
        for status in saga_domain::order::OrderStatus::ALL {
            for (name, body) in SCRIPTS.iter().filter(|(name, _)| *name != "js/types.js") {
                assert!(
                    !body.contains(&format!("'{status}'")),
                    "{name} spells {status}: the page takes statuses from the vocabulary"
                );
            }
        }
    }
}
