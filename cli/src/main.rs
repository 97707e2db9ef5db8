//! `parena`: looks inside arena files without changing them.
//!
//! ```sh
//! cargo install --path cli
//! parena inspect FILE          # header, usage by kind, free-segment sizes, heap walk
//! parena verify FILE           # the heap walk only; exit status 1 when it finds a problem
//! parena blocks FILE           # every live block: handle, offset, generation, length
//! parena inspect --json FILE   # one JSON object, for scripts
//! parena salvage FILE FRESH    # copy what can be vouched for into the new file FRESH
//! parena --version            # the tool's version and the file format it reads
//! parena inspect --salvage FRESH FILE   # the same as `salvage FILE FRESH`
//! ```
//!
//! Every subcommand is one entry in [`COMMANDS`] and one function `fn(&Invocation) -> Outcome`;
//! a new one (such as `salvage`) is added there and nowhere else.
//!
//! The tool uses only parena's public API, opening read-only (`salvage` writes only FRESH, a new
//! file): a file a writer holds is refused
//! (`Locked`), and a file left dirty by a crash is reported as such and left for the next writable
//! open to repair.

mod blocks;
mod json;
mod report;
mod salvage;

use parena::{Arena, Error, Options};
use std::path::PathBuf;
use std::process::ExitCode;

/// One subcommand.
struct Command {
    name: &'static str,
    about: &'static str,
    run: fn(&Invocation) -> Outcome,
}

/// The subcommands, in the order `--help` lists them.
const COMMANDS: &[Command] = &[
    Command {
        name: "inspect",
        about: "print the header, usage by kind, free-segment sizes and the heap walk",
        run: report::inspect,
    },
    Command {
        name: "blocks",
        about: "list every live block: handle, offset, generation, length, pending or published",
        run: blocks::blocks,
    },
    Command {
        name: "verify",
        about: "walk the heap and the free lists; exit status 1 when a problem is found",
        run: report::verify,
    },
    Command {
        name: "salvage",
        about: "FILE FRESH: copy every block two records vouch for into the new file FRESH",
        run: salvage::salvage,
    },
];

/// Exit status: everything as it should be.
const OK: u8 = 0;
/// Exit status: the file opened but the walk found problems.
const PROBLEMS: u8 = 1;
/// Exit status: bad usage, or the file could not be opened as an arena.
const FAILED: u8 = 2;

/// What a subcommand was asked to do.
pub struct Invocation {
    /// The arena file.
    pub path: PathBuf,
    /// Print JSON instead of text.
    pub json: bool,
    /// The `magic_version` the arena was created with.
    pub magic_version: u16,
    /// The second file (`salvage`'s FRESH); only `salvage` takes one.
    pub fresh: Option<PathBuf>,
}

/// How a subcommand ended: its exit status (output already printed).
pub struct Outcome(u8);

impl Invocation {
    /// Opens the file read-only; an error names the path and says what to do where it can.
    pub fn open(&self) -> Result<Arena, String> {
        let opts = Options::new()
            .read_only(true)
            .magic_version(self.magic_version);
        // SAFETY: the user points us at a file that nothing truncates while we look; a writer in
        // any process holds the file's lock, so a concurrent parena writer makes this open fail
        // with `Locked` instead of mapping a changing file.
        let opened = unsafe { opts.map_file(&self.path) };
        opened.map_err(|e| {
            let p = self.path.display();
            match e {
                Error::MagicVersion { found, .. } => format!(
                    "{p}: created with magic_version {found}; run again with --magic-version {found}"
                ),
                Error::Locked => format!("{p}: a writer holds this arena open; close it first"),
                Error::Open { error, .. } => format!("{p}: cannot open: {error}"),
                e => format!("{p}: not openable as a parena arena: {e}"),
            }
        })
    }
}

fn usage() -> String {
    let mut s = String::from(
        "parena: look inside parena arena files (opens read-only, never changes them;\n\
         salvage writes only the new file FRESH)\n\n\
         usage: parena COMMAND [--json] [--magic-version N] [--] FILE\n       \
         parena salvage [--json] FILE FRESH\n       \
         parena inspect --salvage FRESH [--json] FILE   (the same as salvage FILE FRESH)\n       \
         parena help | --help | --version\n\n\
         commands:\n",
    );
    for c in COMMANDS {
        s += &format!("  {:<10} {}\n", c.name, c.about);
    }
    s += "\noptions:\n  --json               one JSON object on stdout instead of text\n  \
          --magic-version N    the user format version the arena was created with (default 0)\n  \
          -h, --help           print this (also `parena help`)\n  \
          -V, --version        print the tool's version and the file format it reads\n  \
          --                   end of options: what follows is a FILE even if it starts with -\n\n\
          exit status: 0 clean, 1 problems found, 2 not opened or bad usage\n\n";
    s += report::GLOSSARY;
    s
}

/// `parena --version`: the tool's version and the arena format version it reads and writes.
fn version() -> String {
    format!(
        "parena {} (arena file format version {})",
        env!("CARGO_PKG_VERSION"),
        parena::FORMAT_VERSION
    )
}

/// Takes a word that is not an option: the command, then FILE, then (for `salvage`) FRESH.
fn positional(
    word: &str,
    command: &mut Option<&'static Command>,
    path: &mut Option<PathBuf>,
    fresh: &mut Option<PathBuf>,
) -> Result<(), String> {
    if command.is_none() {
        *command = Some(
            COMMANDS
                .iter()
                .find(|c| c.name == word)
                .ok_or_else(|| format!("unknown command {word:?}"))?,
        );
    } else if path.is_none() {
        *path = Some(PathBuf::from(word));
    } else if fresh.is_none() && command.is_some_and(|c| c.name == "salvage") {
        *fresh = Some(PathBuf::from(word));
    } else {
        return Err(format!("unexpected argument {word:?}"));
    }
    Ok(())
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("parena: {msg}\n(parena --help for usage)");
    ExitCode::from(FAILED)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut command = None;
    let mut path = None;
    let mut json = false;
    let mut magic_version = 0;
    let mut fresh = None;
    let mut salvage_flag = false;
    let mut options_ended = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            word if options_ended => {
                if let Err(msg) = positional(word, &mut command, &mut path, &mut fresh) {
                    return fail(&msg);
                }
            }
            "--" => options_ended = true,
            "-h" | "--help" => {
                print!("{}", usage());
                return ExitCode::from(OK);
            }
            "help" if command.is_none() => {
                print!("{}", usage());
                return ExitCode::from(OK);
            }
            "-V" | "--version" => {
                println!("{}", version());
                return ExitCode::from(OK);
            }
            "--json" => json = true,
            "--salvage" => match args.next() {
                Some(f) if fresh.is_none() && !f.starts_with('-') => {
                    fresh = Some(PathBuf::from(f));
                    salvage_flag = true;
                }
                _ => return fail("--salvage needs the path of the new file FRESH"),
            },
            "--magic-version" => match args.next().and_then(|v| v.parse().ok()) {
                Some(v) => magic_version = v,
                None => return fail("--magic-version needs a number from 0 to 65535"),
            },
            flag if flag.starts_with('-') && flag != "-" => {
                return fail(&format!("unknown option {flag:?}"))
            }
            word => {
                if let Err(msg) = positional(word, &mut command, &mut path, &mut fresh) {
                    return fail(&msg);
                }
            }
        }
    }
    let Some(mut command) = command else {
        eprint!("{}", usage());
        return ExitCode::from(FAILED);
    };
    if salvage_flag {
        if command.name != "inspect" {
            return fail(&format!(
                "--salvage goes with inspect, not {}",
                command.name
            ));
        }
        command = COMMANDS
            .iter()
            .find(|c| c.name == "salvage")
            .expect("salvage is a command");
    }
    let Some(path) = path else {
        return fail(&format!("{} needs a FILE", command.name));
    };
    let inv = Invocation {
        path,
        json,
        magic_version,
        fresh,
    };
    ExitCode::from((command.run)(&inv).0)
}
