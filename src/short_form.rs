//! When `docker-netattach <word>` may mean `attach <word>`. Pure: reads the clap definition and
//! the arguments, nothing else.
//!
//! The short form is a convenience that must never turn a mistyped command into an action on a
//! container: it applies only when the first positional word is not a subcommand, an alias, or
//! within edit distance 2 of one (`lsit`, `detahc`, `gcc`). A subcommand word keeps its own parse
//! error; a near miss is a usage error naming the subcommand and the long form that attaches a
//! container of that name.
//!
//! The distance counts a swap of two neighbours as one edit (`lsit` is 1 from `list`), and may be
//! at most half the subcommand's length, so at least half of a short name survives: `lss` and
//! `sl` are typos of `ls`, but `db`, `7` (an ID prefix) or `7a` are not typos of `ls`, `gc` or
//! `man`, and stay containers.

use std::ffi::{OsStr, OsString};

use clap::Command;

/// Furthest a word may be from a subcommand name and still be taken for a typo.
pub const NEAR: usize = 2;

/// What the first positional word of a command line that clap refused means.
#[derive(Debug, PartialEq, Eq)]
pub enum Word {
    /// A subcommand or an alias: clap's own error stands.
    Subcommand,
    /// `word` is close to the subcommand name `meant`: a typo, not a container.
    NearMiss { word: String, meant: String },
    /// Anything else (or no positional word at all): the short form of `attach`.
    Container,
}

/// Classifies the first positional word of `args` (without argv[0]) against the subcommands of
/// `cmd`, skipping the options (and their values) of the top level and of `attach`.
pub fn classify(cmd: &Command, args: &[OsString]) -> Word {
    let Some(word) = first_positional(cmd, args) else {
        return Word::Container;
    };
    let Some(word) = word.to_str() else {
        return Word::Container;
    };
    let names = subcommand_names(cmd);
    if names.iter().any(|n| n == word) {
        return Word::Subcommand;
    }
    names
        .into_iter()
        .map(|n| (distance(word, &n), n))
        .filter(|(d, n)| *d <= NEAR && 2 * d <= n.chars().count())
        .min_by_key(|(d, _)| *d)
        .map_or(Word::Container, |(_, meant)| Word::NearMiss {
            word: word.to_string(),
            meant,
        })
}

/// Every name a subcommand answers to, in declaration order: names, aliases, and clap's `help`.
fn subcommand_names(cmd: &Command) -> Vec<String> {
    let mut names: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| std::iter::once(s.get_name()).chain(s.get_all_aliases()))
        .map(str::to_string)
        .collect();
    if !cmd.is_disable_help_subcommand_set() {
        names.push("help".into());
    }
    names
}

/// The word clap takes for the subcommand: the first argument that is neither an option nor the
/// value of one (options of the top level and of `attach`, which the short form accepts before
/// the container, e.g. `--ip 172.17.0.9 web`).
fn first_positional<'a>(cmd: &Command, args: &'a [OsString]) -> Option<&'a OsStr> {
    let options: Vec<&clap::Arg> = cmd
        .get_arguments()
        .chain(
            cmd.find_subcommand("attach")
                .into_iter()
                .flat_map(Command::get_arguments),
        )
        .collect();
    let takes_value = |arg: &clap::Arg| arg.get_action().takes_values();
    let long_takes_value = |name: &str| {
        options
            .iter()
            .any(|a| takes_value(a) && a.get_long() == Some(name))
    };
    let short_takes_value = |c: char| {
        options
            .iter()
            .any(|a| takes_value(a) && a.get_short() == Some(c))
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str() else {
            return Some(arg);
        };
        if text == "--" {
            return it.next().map(OsString::as_os_str);
        }
        if let Some(long) = text.strip_prefix("--") {
            if !long.contains('=') && long_takes_value(long) {
                it.next();
            }
        } else if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            // `-vv`, or `-x VALUE` / `-xVALUE` for a short option that takes a value.
            if let Some(pos) = shorts.chars().position(short_takes_value) {
                if pos + 1 == shorts.chars().count() {
                    it.next();
                }
            }
        } else {
            return Some(arg);
        }
    }
    None
}

/// Edit distance over characters: insertions, deletions, substitutions and swaps of two
/// neighbours (optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i characters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn word(args: &[&str]) -> Word {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        meant(classify(&crate::cli::Cli::command(), &args))
    }

    fn near(meant: &str) -> Word {
        Word::NearMiss {
            word: String::new(),
            meant: meant.into(),
        }
    }

    /// The suggestion only (the word is checked in cli.rs's tests).
    fn meant(w: Word) -> Word {
        match w {
            Word::NearMiss { meant, .. } => near(&meant),
            other => other,
        }
    }

    #[test]
    fn distances() {
        for (a, b, d) in [
            ("list", "list", 0),
            ("lsit", "list", 1),
            ("sl", "ls", 1),
            ("detahc", "detach", 1),
            ("dettach", "detach", 1),
            ("lst", "list", 1),
            ("gcc", "gc", 1),
            ("", "ls", 2),
            ("web", "man", 3),
            ("détach", "detach", 1),
        ] {
            assert_eq!(distance(a, b), d, "{a} {b}");
            assert_eq!(distance(b, a), d, "{b} {a}");
        }
    }

    #[test]
    fn subcommands_aliases_and_near_misses() {
        assert_eq!(word(&["list", "--network", "bridge"]), Word::Subcommand);
        assert_eq!(word(&["ls"]), Word::Subcommand);
        assert_eq!(word(&["help"]), Word::Subcommand);
        assert_eq!(word(&["-v", "gc", "--network", "x"]), Word::Subcommand);
        assert_eq!(word(&["--state-dir", "/tmp/x", "lsit"]), near("list"));
        assert_eq!(word(&["--state-dir=web", "lsit"]), near("list"));
        assert_eq!(word(&["detahc", "web"]), near("detach"));
        assert_eq!(word(&["wacth"]), near("watch"));
        assert_eq!(word(&["Doctor"]), near("doctor"));
        assert_eq!(word(&["lss"]), near("ls"));
        assert_eq!(word(&["sl"]), near("ls"));
        assert_eq!(word(&["lits"]), near("list"));
        assert_eq!(word(&["compeltions", "zsh"]), near("completions"));
    }

    #[test]
    fn container_words() {
        assert_eq!(word(&["web"]), Word::Container);
        // Short names and ID prefixes are not typos of the short subcommands.
        for w in ["db", "7", "7a", "c5", "api", "app", "nginx", "redis"] {
            assert_eq!(word(&[w]), Word::Container, "{w}");
        }
        assert_eq!(word(&["--ip", "172.17.0.9", "web"]), Word::Container);
        assert_eq!(word(&["-vv", "web"]), Word::Container);
        assert_eq!(word(&["--network", "list", "web"]), Word::Container);
        assert_eq!(word(&["--ip", "1.2.3.4"]), Word::Container);
        assert_eq!(word(&["--", "nginx"]), Word::Container);
        assert_eq!(word(&["--", "list"]), Word::Subcommand);
    }
}
