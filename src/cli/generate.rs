//! `abssctl generate <dir>`: the man page and the shell completions, rendered by the
//! binary that is shipped (as ripgrep's `--generate` does), so that the package build needs
//! no second compilation of the crate.
//!
//! Hidden twice: `hide` keeps it out of `--help`, and it is added to the parser only in
//! [`with_generate`], never to [`Cli::command`], so the man page and the completions it
//! writes (both rendered from `Cli::command()`) do not offer it to an operator. The
//! clap_complete generators list hidden subcommands, so `hide` alone would not be enough.

use crate::cli::Cli;
use anyhow::{Context, Result};
use clap::{ArgMatches, CommandFactory};
use clap_complete::Shell;
use flate2::{Compression, GzBuilder};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The subcommand's name on the command line.
pub const NAME: &str = "generate";

/// The parser the binary runs: the public command plus the hidden `generate`.
pub fn with_generate(cmd: clap::Command) -> clap::Command {
    cmd.subcommand(
        clap::Command::new(NAME)
            .hide(true)
            .about("Write the man page and shell completions into DIR (for the package build)")
            .arg(
                clap::Arg::new("dir")
                    .value_name("DIR")
                    .required(true)
                    .value_parser(clap::value_parser!(PathBuf)),
            ),
    )
}

/// The files `generate` writes: (file name, bytes). The names are the ones each shell's
/// vendor directory expects (Cargo.toml's [package.metadata.deb] assets install them).
pub fn assets() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut out = vec![("abssctl.1.gz", man_page_gz()?)];
    for (shell, name) in [
        (Shell::Bash, "abssctl"),
        (Shell::Zsh, "_abssctl"),
        (Shell::Fish, "abssctl.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "abssctl", &mut buf);
        out.push((name, buf));
    }
    Ok(out)
}

/// Man page, gzip -9 with no name and mtime 0 so that the package build is reproducible
/// (lintian checks both the compression and that the archive is deterministic).
fn man_page_gz() -> Result<Vec<u8>> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut roff)
        .context("rendering the man page")?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    gz.write_all(&roff).context("compressing the man page")?;
    gz.finish().context("compressing the man page")
}

/// Run `generate`: write every asset into the directory (created if missing). Returns the
/// exit code; no configuration, lock or operations log is involved (it changes nothing of
/// the system's, and runs at package build time as any user).
pub fn run(m: &ArgMatches) -> i32 {
    let Some(dir) = m.get_one::<PathBuf>("dir") else {
        eprintln!("error: abssctl generate needs the output directory");
        return 2;
    };
    match write_all(dir) {
        Ok(n) => {
            println!(
                "wrote the man page and {n} completion files to {}",
                dir.display()
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            eprintln!("hint: give a directory you can write to");
            3
        }
    }
}

fn write_all(dir: &Path) -> Result<usize> {
    let files = assets()?;
    crate::sys::fs::create_dir_all_mode(dir, 0o755)?;
    for (name, bytes) in &files {
        crate::sys::fs::write_atomic(&dir.join(name), bytes, 0o644)?;
    }
    Ok(files.len() - 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn assets_cover_the_commands_and_never_offer_generate() {
        let files = assets().unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["abssctl.1.gz", "abssctl", "_abssctl", "abssctl.fish"]
        );
        let mut man = String::new();
        flate2::read::GzDecoder::new(&files[0].1[..])
            .read_to_string(&mut man)
            .unwrap();
        assert!(man.starts_with(".ie"), "{}", &man[..80.min(man.len())]);
        assert!(man.contains(".TH abssctl 1"), "{man}");
        for (name, bytes) in &files {
            let text = if *name == "abssctl.1.gz" {
                man.clone()
            } else {
                String::from_utf8(bytes.clone()).unwrap()
            };
            assert!(
                text.contains("instance"),
                "{name} lacks the instance command"
            );
            assert!(
                !text.contains(NAME),
                "{name} offers the hidden generate command"
            );
        }
    }

    #[test]
    fn man_page_is_reproducible() {
        // gzip header: mtime (bytes 4..8) zero, no file name flag.
        let a = man_page_gz().unwrap();
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
        assert_eq!(a[3] & 0x08, 0, "FNAME flag set");
        assert_eq!(a, man_page_gz().unwrap());
    }
}
