//! The hidden `generate-docs OUT_DIR` command, which the package build runs: the man pages
//! (`OUT_DIR/man/failover-dns.1`, and `failover-dns-COMMAND.1` for each command) and the shell
//! completions (`OUT_DIR/completions/failover-dns.bash`, `_failover-dns` for zsh,
//! `failover-dns.fish`), generated from the same clap definitions `--help` prints, so they cannot
//! disagree with it. It is read before clap parses anything: as a clap subcommand, even a hidden
//! one, it would be offered by the completions it writes.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

/// The command's name, as installed.
const BINARY: &str = "failover-dns";

/// The command's name on the command line.
const COMMAND: &str = "generate-docs";

/// Runs `generate-docs OUT_DIR` when `arguments` (without the program name) ask for it; `None`
/// for any other command line.
pub fn run_if_asked(arguments: &[OsString]) -> Option<ExitCode> {
    if arguments.first().is_none_or(|first| first != COMMAND) {
        return None;
    }
    let [_, out_dir] = arguments else {
        eprintln!("usage: {BINARY} {COMMAND} OUT_DIR");
        return Some(ExitCode::from(2));
    };
    let code = match write_docs(Path::new(out_dir)) {
        Ok(written) => {
            let mut out = std::io::stdout().lock();
            for path in written {
                let _ = writeln!(out, "{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{BINARY} {COMMAND}: {error}");
            ExitCode::FAILURE
        }
    };
    Some(code)
}

/// Writes the man pages and completions under `out_dir` and returns every file written.
fn write_docs(out_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man_dir = out_dir.join("man");
    let completions_dir = out_dir.join("completions");
    for dir in [&man_dir, &completions_dir] {
        // Stale pages of a command that no longer exists must not be packaged.
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
    }
    clap_mangen::generate_to(man_page_command(), &man_dir)?;
    let mut written = Vec::new();
    for shell in [Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(
            shell,
            &mut super::command(),
            BINARY,
            &completions_dir,
        )?);
    }
    let bash = completions_dir.join(format!("{BINARY}.bash"));
    std::fs::write(&bash, bash_completion())?;
    written.push(bash);
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man_dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    pages.extend(written);
    Ok(pages)
}

/// The command line as the man pages show it: the NAME line of failover-dns(1) takes the first
/// sentence of the description, without the name it would repeat ("failover-dns - a small DNS
/// server for a zero-trust agent"); DESCRIPTION keeps the whole text.
fn man_page_command() -> clap::Command {
    let command = super::command();
    let about = command
        .get_about()
        .map(ToString::to_string)
        .unwrap_or_default();
    let about = about.strip_prefix(&format!("{BINARY}: ")).unwrap_or(&about);
    let first_sentence = about.split(". ").next().unwrap_or(about);
    let name_line = first_sentence.trim_end_matches('.').to_string();
    command.about(name_line)
}

/// The bash completion script. clap_complete (4.6.12 and before) spells the case labels of
/// subcommands of a hyphenated binary differently from the state its loop computes
/// (`failover__subcmd__dns__subcmd__serve` against `failover__dns__subcmd__serve`), so no option
/// after a command would complete; the labels are respelled the way the loop spells them. Once
/// clap_complete agrees with itself this changes nothing.
fn bash_completion() -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(Shell::Bash, &mut super::command(), BINARY, &mut script);
    let script = String::from_utf8_lossy(&script);
    let loop_spelling = BINARY.replace('-', "__");
    let label_spelling = BINARY.replace('-', "__subcmd__");
    script
        .replace(
            &format!("{label_spelling}__subcmd__"),
            &format!("{loop_spelling}__subcmd__"),
        )
        .into_bytes()
}
