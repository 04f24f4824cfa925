//! Builds an example of this crate with the cargo that runs the test or bench, and
//! returns its executable, found through cargo's JSON messages wherever the target
//! directory is. Shared by `tests/common/chat_process.rs` and `benches/soak` (which
//! includes this file by path).

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `cargo build --example NAME` with `args` (a profile, features), run in `dir`.
pub fn build_example(name: &str, args: &[&str], dir: &Path) -> io::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Cargo describes the running test or bench in its environment
    // (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`, ...). Some build scripts (ring's)
    // rebuild when those change: passed on, they would make this build and the next
    // `cargo test`/`cargo bench` rebuild each other's dependencies every time.
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("CARGO_PKG_")
            || var.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*var,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            cmd.env_remove(&*var);
        }
    }
    let mut child = cmd
        .args([
            "build",
            "--example",
            name,
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut exe = None;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line?) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == name
            && let Some(path) = msg["executable"].as_str()
        {
            exe = Some(PathBuf::from(path));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "cargo build --example {name}: {status}"
        )));
    }
    exe.ok_or_else(|| io::Error::other(format!("cargo built no {name} executable")))
}
