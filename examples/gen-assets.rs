//! Build helper for the Debian package: writes the man page and the shell completions,
//! generated from the same clap definition as `--help`, into the directory given as the
//! only argument. Run before `cargo deb`:
//!
//!     cargo run --release --example gen-assets -- target/assets
//!
//! Why an example and not build.rs: the assets need the finished `abssctl::cli::Cli`
//! (a build script cannot use its own crate), and generating them on every build would
//! slow down the inner development loop for a packaging-only concern.

use abssctl::cli::Cli;
use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use clap_complete::Shell;
use flate2::{Compression, GzBuilder};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: gen-assets <output-dir>");
    };
    let out = PathBuf::from(out);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    write_man_page(&out.join("abssctl.1.gz"))?;
    // File names are the ones each shell's vendor directory expects (see Cargo.toml's
    // [package.metadata.deb] assets).
    for (shell, name) in [
        (Shell::Bash, "abssctl"),
        (Shell::Zsh, "_abssctl"),
        (Shell::Fish, "abssctl.fish"),
    ] {
        let path = out.join(name);
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "abssctl", &mut buf);
        fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "gen-assets: wrote man page and completions to {}",
        out.display()
    );
    Ok(())
}

/// Man page, gzip -9 with no name and mtime 0 so that the package build is reproducible
/// (lintian checks both the compression and that the archive is deterministic).
fn write_man_page(path: &Path) -> Result<()> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut roff)
        .context("rendering the man page")?;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut gz = GzBuilder::new().mtime(0).write(file, Compression::best());
    gz.write_all(&roff)
        .and_then(|()| gz.finish().map(drop))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
