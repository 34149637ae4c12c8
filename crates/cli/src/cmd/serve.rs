//! `vlad serve`: builds the page's wasm package if needed and serves `www/` on localhost.
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// `vlad serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The page directory (default: `www/` of this checkout).
    #[arg(long)]
    pub www: Option<PathBuf>,
    /// Do not build the wasm package, even if it is missing.
    #[arg(long)]
    pub no_build: bool,
    /// Rebuild the wasm package even if it exists.
    #[arg(long)]
    pub rebuild: bool,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "bpk" | "safetensors" => "application/octet-stream",
        _ => "application/octet-stream",
    }
}

/// Maps a request path to a file under `root`, refusing anything that escapes it.
fn resolve(root: &Path, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let mut out = root.to_path_buf();
    for c in Path::new(path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

/// Builds if needed and serves until interrupted.
pub fn run(args: ServeArgs) -> Result<()> {
    let root = repo_root();
    let www = args.www.clone().unwrap_or_else(|| root.join("www"));
    if !www.join("index.html").exists() {
        bail!("{}: no index.html (pass --www DIR)", www.display());
    }
    let pkg = www.join("pkg/vlad_web.js");
    if (args.rebuild || !pkg.exists()) && !args.no_build {
        eprintln!("building the wasm package (tools/build-web.sh; the first build takes a while)…");
        let status = std::process::Command::new("bash")
            .arg(root.join("tools/build-web.sh"))
            .status()
            .context("cannot run tools/build-web.sh")?;
        if !status.success() {
            bail!("tools/build-web.sh failed ({status})");
        }
    }
    if !pkg.exists() {
        bail!("{} is missing: run tools/build-web.sh", pkg.display());
    }
    let server = tiny_http::Server::http(("127.0.0.1", args.port)).map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    eprintln!("serving {} at http://127.0.0.1:{}/ (Ctrl-C to stop)", www.display(), args.port);
    for request in server.incoming_requests() {
        let response = match resolve(&www, request.url()) {
            Some(path) if path.is_file() => match std::fs::File::open(&path) {
                Ok(mut f) => {
                    let mut body = Vec::new();
                    f.read_to_end(&mut body).ok();
                    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], mime(&path).as_bytes()).expect("valid header");
                    tiny_http::Response::from_data(body).with_header(header).with_status_code(200)
                }
                Err(_) => tiny_http::Response::from_string("cannot read file").with_status_code(500),
            },
            _ => tiny_http::Response::from_string("not found").with_status_code(404),
        };
        let _ = request.respond(response);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let root = Path::new("/srv/www");
        assert_eq!(resolve(root, "/pkg/vlad_web.js?x=1"), Some(PathBuf::from("/srv/www/pkg/vlad_web.js")));
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(mime(Path::new("a.wasm")), "application/wasm");
    }
}
