//! Allow-files: an error names a line that exists in the file and holds the entry that fails to
//! parse on its own; a success records, for every entry, a line of the file that holds it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tls_echo::firewall::allowlist::{AllowEntry, AllowFileError, parse_allow_file};

fuzz_target!(|text: &str| {
    let lines: Vec<&str> = text.lines().collect();
    let entry_on = |n: usize| lines[n - 1].split('#').next().unwrap_or("").trim();
    match parse_allow_file(text, Path::new("allow.txt")) {
        Err(AllowFileError::Entry { line, source, .. }) => {
            assert!(
                (1..=lines.len()).contains(&line),
                "line {line} of {}",
                lines.len()
            );
            let entry = entry_on(line);
            assert_eq!(
                entry.parse::<AllowEntry>().err(),
                Some(source),
                "line {line}"
            );
            for n in 1..line {
                let earlier = entry_on(n);
                assert!(earlier.is_empty() || earlier.parse::<AllowEntry>().is_ok());
            }
        }
        Err(other) => panic!("parsing text cannot fail to read: {other}"),
        Ok(entries) => {
            for (cidr, origin) in entries {
                let n: usize = origin
                    .strip_prefix("allow.txt:")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("origin {origin:?} names no line"));
                assert!((1..=lines.len()).contains(&n), "{origin}");
                match entry_on(n).parse::<AllowEntry>() {
                    Ok(AllowEntry::Net(c)) => assert_eq!(c, cidr, "{origin}"),
                    Ok(AllowEntry::Any) => {
                        assert_eq!(cidr.to_string().split_once('/').map(|p| p.1), Some("0"))
                    }
                    Err(e) => panic!("{origin} was accepted but does not parse: {e}"),
                }
            }
        }
    }
});
