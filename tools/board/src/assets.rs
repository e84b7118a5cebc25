//! The page: one HTML file, one script, one stylesheet, embedded in the binary at build time.
//! No build step and no CDN: what is in `assets/` is what the browser runs, offline too.

use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/board.js");
const STYLE: &str = include_str!("assets/board.css");

/// `GET /`, `GET /assets/board.js`, `GET /assets/board.css`.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let file = |body: &'static str, content_type: &'static str| {
        move || {
            let reply = warp::reply::with_header(body, "content-type", content_type);
            // The page and the binary go together: a new build must not meet a cached script.
            warp::reply::with_header(reply, "cache-control", "no-store").into_response()
        }
    };
    let index = warp::path::end()
        .and(warp::get())
        .map(file(INDEX, "text/html; charset=utf-8"));
    let script = warp::path!("assets" / "board.js")
        .and(warp::get())
        .map(file(SCRIPT, "text/javascript; charset=utf-8"));
    let style = warp::path!("assets" / "board.css")
        .and(warp::get())
        .map(file(STYLE, "text/css; charset=utf-8"));
    index.or(script).unify().or(style).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX.contains(r#"src="/assets/board.js""#));
        assert!(INDEX.contains(r#"href="/assets/board.css""#));
        for asset in [INDEX, SCRIPT, STYLE] {
            // The SVG namespace is a name, not a place the browser goes to.
            let asset = asset.replace("http://www.w3.org/2000/svg", "");
            assert!(!asset.contains("http://"), "no remote resource");
            assert!(!asset.contains("https://"), "no remote resource");
            assert!(!asset.contains("//cdn"), "no CDN");
        }
    }
}
