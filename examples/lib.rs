//! What parena's examples share: one command line (`--path FILE`, `--keep`, `--help`, the
//! example's own numeric flags; anything else is refused) and one rule for the arena file.
//!
//! - Without `--path` the arena lives in a fresh file under the temporary directory and is removed
//!   at the end, unless `--keep` is given.
//! - With `--path FILE` the arena is created at `FILE`, which must not exist yet (an existing file
//!   is an error that names it, never overwritten), and is kept: the user named it.
//! - A kept file is announced with the command that inspects it: `parena inspect FILE`.

use std::path::{Path, PathBuf};

/// A numeric flag an example takes: `--name N`.
pub struct Flag {
    /// The flag without its dashes.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// The value when the flag is not given.
    pub default: u64,
}

/// A parsed command line.
pub struct Args {
    example: &'static str,
    flags: &'static [Flag],
    values: Vec<u64>,
    /// Where the arena file lives.
    pub path: PathBuf,
    /// Whether the file stays after the example ends.
    pub keep: bool,
}

impl Args {
    /// Parses `std::env::args()` for `example`; prints usage and exits on `--help` (status 0) or
    /// on anything it does not know (status 2).
    pub fn parse(example: &'static str, about: &'static str, flags: &'static [Flag]) -> Args {
        Self::parse_from(example, about, flags, std::env::args().skip(1))
    }

    fn parse_from(
        example: &'static str,
        about: &'static str,
        flags: &'static [Flag],
        args: impl IntoIterator<Item = String>,
    ) -> Args {
        let mut a = Args {
            example,
            flags,
            values: flags.iter().map(|f| f.default).collect(),
            path: std::env::temp_dir()
                .join(format!("parena-{example}-{}.arena", std::process::id())),
            keep: false,
        };
        let usage = |problem: Option<String>| -> ! {
            let text = help_text(example, about, flags);
            match problem {
                None => {
                    print!("{text}");
                    std::process::exit(0)
                }
                Some(p) => {
                    eprint!("{example}: {p}\n\n{text}");
                    std::process::exit(2)
                }
            }
        };
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "-h" | "--help" => usage(None),
                "--keep" => a.keep = true,
                "--path" => match it.next() {
                    Some(p) if !p.starts_with('-') => {
                        a.path = p.into();
                        a.keep = true;
                    }
                    _ => usage(Some("--path needs a FILE".into())),
                },
                other => {
                    let known = other
                        .strip_prefix("--")
                        .and_then(|n| flags.iter().position(|f| f.name == n));
                    let Some(i) = known else {
                        usage(Some(format!("unknown argument {other:?}")))
                    };
                    let v = it.next().and_then(|v| v.replace('_', "").parse().ok());
                    let Some(v) = v else {
                        usage(Some(format!("{other} needs a whole number")))
                    };
                    a.values[i] = v;
                }
            }
        }
        a
    }

    /// The value of `--name`.
    ///
    /// # Panics
    ///
    /// If the example did not declare the flag.
    pub fn get(&self, name: &str) -> u64 {
        let i = self.flags.iter().position(|f| f.name == name);
        self.values[i.unwrap_or_else(|| panic!("{}: no flag --{name}", self.example))]
    }

    /// Fails, naming the path, when the arena file exists already: examples never overwrite.
    pub fn check_fresh(&self) -> Result<(), String> {
        if self.path.exists() {
            return Err(format!(
                "{}: already exists; pick another --path or remove it",
                self.path.display()
            ));
        }
        Ok(())
    }

    /// Removes the arena file unless it is kept; prints how to inspect it when it is.
    pub fn finish(&self) {
        if self.keep {
            println!("kept {}; look inside with:", self.path.display());
            println!("  {}", inspect_command(&self.path));
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The command that inspects the arena at `path` (the tool is `cli/`, `cargo install --path cli`).
pub fn inspect_command(path: &Path) -> String {
    let p = path.display().to_string();
    if p.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c))
    {
        format!("parena inspect {p}")
    } else {
        format!("parena inspect '{}'", p.replace('\'', r"'\''"))
    }
}

/// The `--help` text: usage, then one line per option, every description in one column.
fn help_text(example: &str, about: &str, flags: &[Flag]) -> String {
    let mut text =
        format!("{example}: {about}\n\nusage: cargo run --release -p parena-examples --example {example} --");
    for f in flags {
        text += &format!(" [--{} N]", f.name);
    }
    text += " [--path FILE] [--keep]\n\n";
    let mut lines: Vec<(String, String)> = flags
        .iter()
        .map(|f| {
            (
                format!("--{} N", f.name),
                format!("{} (default {})", f.help, f.default),
            )
        })
        .collect();
    for (option, what) in [
        (
            "--path FILE",
            "create the arena at FILE (must not exist) and keep it",
        ),
        (
            "--keep",
            "keep the arena file (default: a temporary file, removed at the end)",
        ),
        ("--help", "print this and exit"),
    ] {
        lines.push((option.into(), what.into()));
    }
    let width = lines.iter().map(|(o, _)| o.len()).max().unwrap_or(0);
    for (option, what) in lines {
        text += &format!("  {option:<width$}  {what}\n");
    }
    text
}

/// Runs an example's body; an error is printed as `example: error` (no `Debug` quoting) and
/// ends the process with status 1.
pub fn main_with(example: &str, body: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>) {
    if let Err(e) = body() {
        eprintln!("{example}: {e}");
        std::process::exit(1);
    }
}

/// Error for a failed open: the parena error with the path it was about.
pub fn at(path: &Path) -> impl Fn(parena::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[Flag {
        name: "keys",
        help: "keys",
        default: 7,
    }];

    fn parse(args: &[&str]) -> Args {
        Args::parse_from("t", "test", FLAGS, args.iter().map(|s| s.to_string()))
    }

    /// Every option's description starts in the same column.
    #[test]
    fn help_is_aligned() {
        let flags = &[
            Flag {
                name: "records",
                help: "records",
                default: 1,
            },
            Flag {
                name: "threads",
                help: "threads",
                default: 2,
            },
        ];
        let text = help_text("t", "test", flags);
        let columns: Vec<usize> = text
            .lines()
            .filter(|l| l.starts_with("  --"))
            .map(|l| {
                let gap = l[2..].find("  ").unwrap() + 2;
                gap + l[gap..].find(|c: char| c != ' ').unwrap()
            })
            .collect();
        assert_eq!(columns.len(), 5, "{text}");
        assert!(
            columns.windows(2).all(|w| w[0] == w[1]),
            "{columns:?}\n{text}"
        );
    }

    #[test]
    fn path_keeps_and_flags_parse() {
        let a = parse(&["--keys", "1_000", "--path", "/tmp/x"]);
        assert_eq!(a.get("keys"), 1000);
        assert!(a.keep);
        assert_eq!(a.path, PathBuf::from("/tmp/x"));
        let a = parse(&[]);
        assert_eq!(a.get("keys"), 7);
        assert!(!a.keep);
    }
}
