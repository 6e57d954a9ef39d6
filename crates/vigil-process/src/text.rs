//! Text rules of Tetragon's JSON: valid UTF-8 everywhere and its `arguments` string.

/// Makes `bytes` valid UTF-8 the way Go's `strings.ToValidUTF8(s, "\uFFFD")` does: each run
/// of consecutive invalid bytes becomes one U+FFFD.
pub fn valid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // SAFETY: from_utf8 validated this prefix.
                out.push_str(unsafe { std::str::from_utf8_unchecked(good) });
                let mut skip = e.error_len().unwrap_or(bad.len());
                // Go collapses a whole run of invalid bytes into one replacement.
                loop {
                    let tail = &bad[skip..];
                    if tail.is_empty() {
                        break;
                    }
                    match std::str::from_utf8(tail) {
                        Err(e2) if e2.valid_up_to() == 0 => {
                            skip += e2.error_len().unwrap_or(tail.len());
                        }
                        _ => break,
                    }
                }
                out.push('\u{FFFD}');
                rest = &bad[skip..];
            }
        }
    }
    out
}

/// Splits a NUL-separated block (argv or environment, as in a process's memory or
/// /proc/<pid>/cmdline) into its strings. A block cut by truncation keeps its partial last
/// string.
pub fn split_nul(block: &[u8]) -> Vec<Vec<u8>> {
    if block.is_empty() {
        return Vec::new();
    }
    let body = block.strip_suffix(&[0]).unwrap_or(block);
    body.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

/// Tetragon's `arguments`: argv[1..] joined by one space; an argument containing a space is
/// wrapped in double quotes; nothing else is escaped.
pub fn tetragon_arguments(argv: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().skip(1).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let text = valid_utf8(arg);
        if text.contains(' ') {
            out.push('"');
            out.push_str(&text);
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&[u8]]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.to_vec()).collect()
    }

    #[test]
    fn arguments_quote_only_args_with_spaces() {
        let a = argv(&[b"/bin/echo", b"a b", b"c\"d", b"", b"x"]);
        assert_eq!(tetragon_arguments(&a), "\"a b\" c\"d  x");
    }

    #[test]
    fn arguments_keep_newlines_raw() {
        assert_eq!(tetragon_arguments(&argv(&[b"p", b"l1\nl2"])), "l1\nl2");
    }

    #[test]
    fn invalid_utf8_runs_become_one_replacement() {
        assert_eq!(valid_utf8(b"a\xff\xfeb"), "a\u{FFFD}b");
        assert_eq!(valid_utf8(b"\xe2\x82"), "\u{FFFD}");
        assert_eq!(valid_utf8(b"ok\xffok\xff"), "ok\u{FFFD}ok\u{FFFD}");
        assert_eq!(valid_utf8("é".as_bytes()), "é");
    }

    #[test]
    fn nul_blocks_split_like_argv() {
        assert_eq!(
            split_nul(b"a\0b c\0\0x\0"),
            vec![b"a".to_vec(), b"b c".to_vec(), vec![], b"x".to_vec()]
        );
        assert_eq!(split_nul(b"trunc"), vec![b"trunc".to_vec()]);
        assert!(split_nul(b"").is_empty());
    }

    #[test]
    fn no_arguments_is_empty() {
        assert_eq!(tetragon_arguments(&argv(&[b"/bin/true"])), "");
        assert_eq!(tetragon_arguments(&[]), "");
    }
}
