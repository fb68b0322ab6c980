//! What a step printed, made safe to show on a terminal. A step's output is data, not
//! commands to the reader's terminal: a title change (`ESC ] 0 ; ... BEL`), a screen
//! clear (`ESC [ 2 J`), a cursor move or a hyperlink could rewrite what `phased logs`
//! or `phased status` shows, or worse. Every control sequence and control character
//! is removed but tab and newline; colours (SGR) are kept only when asked for.

use std::borrow::Cow;
use std::iter::Peekable;
use std::str::Chars;

/// When colours a step printed are kept.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    Auto,
    Always,
    Never,
}

/// `--color`, for the commands that print what steps printed.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ColorArg {
    /// Keep the colours steps printed: `auto` on a terminal unless NO_COLOR is set,
    /// `always`, `never`. Other control sequences (titles, cursor moves, screen
    /// clears) are always removed.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

impl ColorArg {
    /// Whether colours are kept on stdout.
    pub(crate) fn colors(&self) -> bool {
        match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            // https://no-color.org: set and not empty.
            ColorChoice::Auto => {
                std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// `text` without terminal control sequences and control characters (tab and newline
/// stay); colour sequences stay when `colors`.
pub(crate) fn clean(text: &str, colors: bool) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t' && c != '\n') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' | '\n' => out.push(c),
            '\u{1b}' => match chars.peek().copied() {
                Some('[') => {
                    chars.next();
                    let (parameters, last) = control_sequence(&mut chars);
                    if colors
                        && last == Some('m')
                        && parameters.chars().all(|c| c.is_ascii_digit() || c == ';' || c == ':')
                    {
                        out.push_str("\u{1b}[");
                        out.push_str(&parameters);
                        out.push('m');
                    }
                }
                // OSC (titles, hyperlinks, clipboard), DCS, SOS, PM, APC: strings.
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    chars.next();
                    skip_string(&mut chars);
                }
                // `ESC ( B` and the like: intermediates, then one final character.
                Some(' '..='/') => {
                    while chars.next_if(|c| (' '..='/').contains(c)).is_some() {}
                    chars.next_if(|c| ('0'..='~').contains(c));
                }
                // `ESC c` (reset), `ESC 7`, `ESC M`...: one character.
                Some('0'..='~') => {
                    chars.next();
                }
                _ => {}
            },
            // The 8-bit forms of CSI, and of the string sequences.
            '\u{9b}' => {
                control_sequence(&mut chars);
            }
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The rest of a CSI sequence: its parameter and intermediate characters, and its
/// final character if it has one (a malformed sequence ends before what does not fit).
fn control_sequence(chars: &mut Peekable<Chars<'_>>) -> (String, Option<char>) {
    let mut parameters = String::new();
    while let Some(c) = chars.next_if(|c| (' '..='?').contains(c)) {
        parameters.push(c);
    }
    (parameters, chars.next_if(|c| ('@'..='~').contains(c)))
}

/// Skips a string sequence up to its terminator: BEL, `ESC \` or the 8-bit ST. Another
/// ESC ends it too (and starts what follows).
fn skip_string(chars: &mut Peekable<Chars<'_>>) {
    while let Some(c) = chars.peek().copied() {
        match c {
            '\u{7}' | '\u{9c}' => {
                chars.next();
                return;
            }
            '\u{1b}' => {
                chars.next();
                chars.next_if_eq(&'\\');
                return;
            }
            _ => {
                chars.next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn control_sequences_go_and_the_text_stays() {
        let cases = [
            ("plain\ttext", "plain\ttext"),
            ("\u{1b}]0;pwned\u{7}after", "after"),
            ("\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\", "link"),
            ("\u{1b}[2Jcleared\u{1b}[H", "cleared"),
            ("\u{1b}[31mred\u{1b}[0m", "red"),
            ("\u{1b}[?1049hhidden", "hidden"),
            ("\u{1b}(Bcharset\u{1b}c", "charset"),
            ("\u{1b}P1$r\u{1b}\\dcs", "dcs"),
            ("\u{9b}2J\u{9d}0;title\u{9c}c1", "c1"),
            ("bell\u{7} back\u{8}space\r\u{7f}", "bell backspace"),
            ("unterminated \u{1b}]0;title", "unterminated "),
            ("lone\u{1b}", "lone"),
            ("é ✓ 漢字", "é ✓ 漢字"),
        ];
        for (text, expected) in cases {
            assert_eq!(clean(text, false), expected, "{text:?}");
            assert_eq!(clean(text, true).replace("\u{1b}[31m", "").replace("\u{1b}[0m", ""), expected, "{text:?}");
        }
    }

    #[test]
    fn colours_stay_only_when_asked_for() {
        let text = "\u{1b}[1;31mred\u{1b}[0m \u{1b}[38:5:196mmore\u{1b}[m\u{1b}]0;t\u{7}\u{1b}[2J";
        assert_eq!(clean(text, true), "\u{1b}[1;31mred\u{1b}[0m \u{1b}[38:5:196mmore\u{1b}[m");
        assert_eq!(clean(text, false), "red more");
        // A private-mode sequence ending in `m` is not a colour.
        assert_eq!(clean("\u{1b}[>4;2mx", true), "x");
    }
}
