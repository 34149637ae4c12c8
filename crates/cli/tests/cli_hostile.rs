//! Hostile files given to the `vlad` binary, as a user would: each is refused with exit status 1 and
//! one line on standard error naming the file and the problem, without a large allocation (the peak
//! RSS of every child process is measured).

use std::path::PathBuf;
use std::process::Command;

fn hostile(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hostile").join(name)
}

/// Runs vlad (no RUST_BACKTRACE, as a user runs it) and returns its single stderr line.
fn refused(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vlad")).args(args).env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vlad-cli-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn hostile_files_are_refused_in_one_line_without_large_allocations() {
    let out = scratch().join("x.npy");
    let out = out.to_str().unwrap();
    for (name, dims) in [("bomb.png", "100000x100000"), ("bomb.jpg", "65500x65500"), ("bomb.tiff", "100000x100000"), ("bomb.bmp", "65535x65535")] {
        let path = hostile(name);
        let line = refused(&["preprocess", "--image", path.to_str().unwrap(), "--image-size", "224", "--out", out]);
        assert!(line.contains(name) && line.contains(dims) && line.contains("decompression bomb"), "{line}");
    }
    assert!(!std::path::Path::new(out).exists(), "nothing is written for a refused image");

    // --max-image-pixels is global (before or after the subcommand) and follows Pillow's rule.
    let large = hostile("large_10000.png");
    let large = large.to_str().unwrap();
    let line = refused(&["--max-image-pixels", "40000000", "preprocess", "--image", large, "--image-size", "8", "--out", out]);
    assert!(line.contains("over the limit of 80000000 pixels"), "{line}");
    let line = refused(&["preprocess", "--image", large, "--image-size", "8", "--out", out, "--max-image-pixels", "40000000"]);
    assert!(line.contains("over the limit of 80000000 pixels"), "{line}");

    for (name, what) in [
        ("os_system.pth", "imports `os.system`"),
        ("cyclic.pth", "contains itself"),
        ("deep.pth", "nest deeper than"),
        ("tensor_2p40.safetensors", "tensor `w`: shape [1099511627776, 1099511627776]"),
        ("header_2p62.safetensors", "header declares 4611686018427387904 bytes"),
    ] {
        let line = refused(&["inspect", hostile(name).to_str().unwrap()]);
        assert!(line.contains(name) && line.contains(what), "{line}");
    }

    let npy = hostile("huge_shape.npy");
    let npy = npy.to_str().unwrap();
    let line = refused(&["metrics", "--scores", npy, "--labels", npy]);
    assert!(line.contains("huge_shape.npy") && line.contains("the file holds 16"), "{line}");

    // A missing file: the cause is said once, not once per layer of context.
    let line = refused(&["preprocess", "--image", "/nonexistent/vlad.png", "--image-size", "8", "--out", out]);
    assert_eq!(line.matches("No such file").count(), 1, "{line}");
    assert!(line.contains("/nonexistent/vlad.png"), "{line}");

    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) }, 0);
    let peak_kb = unsafe { usage.assume_init() }.ru_maxrss;
    eprintln!("largest peak RSS of a refusing vlad process: {} MB", peak_kb / 1024);
    assert!(peak_kb < 100 * 1024, "a vlad process peaked at {peak_kb} kB, expected < 100 MB");
    std::fs::remove_dir_all(scratch()).ok();
}
