//! A small parser from a stack trace in text to `parsedStack` frames, so that the portal can
//! show an exception's frames one by one.
//!
//! It understands three forms, line by line, and skips every line it does not understand:
//!
//! - Rust's `std::backtrace::Backtrace` (and the `backtrace` crate, `anyhow`, `eyre`):
//!   ```text
//!      0: shop::orders::load
//!                at ./src/orders.rs:42:17
//!         shop::orders::inlined_helper
//!      1: 0x55d0c2a3b4c5 - <unknown>
//!   ```
//!   A numbered line starts a frame (an address prefix `0x… - ` is dropped), an indented
//!   unnumbered line after it is an inlined frame, and `at file:line[:column]` is the location
//!   of the frame before it.
//! - The common `at method (file:line[:column])` form (JavaScript, Java: `at a.B.c(B.java:42)`).
//! - .NET's `at Namespace.Type.Method() in C:\path\File.cs:line 42`.
//!
//! It never panics, keeps at most [`MAX_PARSED_FRAMES`] frames, and stops before the frames'
//! text exceeds a budget (at most [`MAX_FRAMES_TEXT`] bytes), so that the parsed frames cannot
//! push the item over the service's 64 KiB limit.

use crate::wire::{Bounded, StackFrame, MAX_PARSED_FRAMES};

/// The frames' method and file names together stop at this many bytes.
pub(crate) const MAX_FRAMES_TEXT: usize = 16 * 1024;

/// The frames of `stack`, in the order of the text, at most [`MAX_PARSED_FRAMES`] and
/// `max_text` bytes of method and file names.
pub(crate) fn parse_stack(stack: &str, max_text: usize) -> Vec<StackFrame<'_>> {
    let mut frames: Vec<StackFrame<'_>> = Vec::new();
    // Bytes of method and file names taken so far.
    let mut text = 0usize;
    // Inside a Rust backtrace: unnumbered indented lines are inlined frames.
    let mut rust = false;
    // The last frame is a Rust one that may still receive its `at file:line` location.
    let mut awaiting_location = false;
    for line in stack.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let indented = line.starts_with(char::is_whitespace);
        let frame = if let Some(rest) = trimmed.strip_prefix("at ") {
            let rest = rest.trim();
            let frame = dotnet_frame(rest).or_else(|| parenthesised_frame(rest));
            if frame.is_none() && awaiting_location {
                let (file, line) = split_location(rest);
                if let Some(last) = frames.last_mut() {
                    if text + file.len() <= max_text {
                        text += file.len();
                        last.file_name = Some(Bounded::new(file));
                        last.line = line;
                    }
                }
                awaiting_location = false;
                continue;
            }
            awaiting_location = false;
            frame.or_else(|| {
                Some(if rest.ends_with(')') {
                    // `at Type.Method()` without a location (.NET, Java `(Native Method)`).
                    (rest, None, None)
                } else {
                    // `at file:line:col` of an anonymous function (JavaScript).
                    let (file, line) = split_location(rest);
                    ("<anonymous>", Some(file), line)
                })
            })
        } else if let Some(method) = numbered_frame(trimmed) {
            rust = true;
            awaiting_location = true;
            Some((method, None, None))
        } else if rust && indented {
            awaiting_location = true;
            Some((trimmed, None, None))
        } else {
            rust = false;
            awaiting_location = false;
            None
        };
        let Some((method, file, line)) = frame else {
            continue;
        };
        let cost = method.len() + file.map_or(0, str::len);
        if frames.len() >= MAX_PARSED_FRAMES || text + cost > max_text {
            break;
        }
        text += cost;
        frames.push(StackFrame {
            level: i32::try_from(frames.len()).unwrap_or(i32::MAX),
            method: Bounded::new(method),
            assembly: None,
            file_name: file.map(Bounded::new),
            line,
        });
    }
    frames
}

type Frame<'s> = (&'s str, Option<&'s str>, Option<i32>);

/// `12: method` (Rust), the method without an `0x… - ` address prefix.
fn numbered_frame(line: &str) -> Option<&str> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let rest = line.get(digits..)?.strip_prefix(':')?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        // `12:30:45 ...` is a time, not a frame.
        return None;
    }
    let method = rest.trim();
    let method = match method.split_once(" - ") {
        Some((address, name)) if address.starts_with("0x") => name.trim(),
        _ => method,
    };
    (!method.is_empty()).then_some(method)
}

/// `method (file:line[:col])` or `method(file:line)`.
fn parenthesised_frame(rest: &str) -> Option<Frame<'_>> {
    let inner = rest.strip_suffix(')')?;
    let open = inner.rfind('(')?;
    let method = inner.get(..open)?.trim();
    let location = inner.get(open + 1..)?.trim();
    if method.is_empty() || location.is_empty() {
        return None;
    }
    let (file, line) = split_location(location);
    // `foo(bar)` without a line number is a signature, not a location.
    line?;
    Some((method, Some(file), line))
}

/// `method in file:line 42` (.NET).
fn dotnet_frame(rest: &str) -> Option<Frame<'_>> {
    let (method, location) = rest.rsplit_once(" in ")?;
    let (file, line) = location.rsplit_once(":line ")?;
    let line = line.trim().parse().ok()?;
    let method = method.trim();
    (!method.is_empty()).then_some((method, Some(file.trim()), Some(line)))
}

/// `file:line:column`, `file:line` or just `file`; a Windows drive letter (`C:\…`) stays in
/// the file name.
fn split_location(location: &str) -> (&str, Option<i32>) {
    let number = |s: &str| -> Option<i32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let Some((head, last)) = location.rsplit_once(':') else {
        return (location, None);
    };
    if number(last).is_none() {
        return (location, None);
    }
    // `file:line:col`: the line is the second number from the end.
    if let Some((file, line)) = head.rsplit_once(':') {
        if let Some(n) = number(line) {
            return (file, Some(n));
        }
    }
    (head, number(last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(stack: &str) -> Vec<(i32, String, Option<String>, Option<i32>)> {
        parse_stack(stack, MAX_FRAMES_TEXT)
            .into_iter()
            .map(|f| {
                (
                    f.level,
                    f.method.as_str().to_owned(),
                    f.file_name.map(|n| n.as_str().to_owned()),
                    f.line,
                )
            })
            .collect()
    }

    fn f(
        level: i32,
        method: &str,
        file: Option<&str>,
        line: Option<i32>,
    ) -> (i32, String, Option<String>, Option<i32>) {
        (level, method.to_owned(), file.map(str::to_owned), line)
    }

    #[test]
    fn rust_std_backtrace() {
        let stack = "   0: shop::orders::load\n             at ./src/orders.rs:42:17\n   1: shop::http::handle::{{closure}}\n             at /home/me/shop/src/http.rs:88:9\n      <core::pin::Pin<P> as core::future::future::Future>::poll\n             at /rustc/abc/library/core/src/future/future.rs:123:9\n   2: std::rt::lang_start_internal\n   3: 0x55d0c2a3b4c5 - main\n   4: <unknown>\n";
        assert_eq!(
            frames(stack),
            vec![
                f(0, "shop::orders::load", Some("./src/orders.rs"), Some(42)),
                f(
                    1,
                    "shop::http::handle::{{closure}}",
                    Some("/home/me/shop/src/http.rs"),
                    Some(88)
                ),
                f(
                    2,
                    "<core::pin::Pin<P> as core::future::future::Future>::poll",
                    Some("/rustc/abc/library/core/src/future/future.rs"),
                    Some(123)
                ),
                f(3, "std::rt::lang_start_internal", None, None),
                f(4, "main", None, None),
                f(5, "<unknown>", None, None),
            ]
        );
    }

    #[test]
    fn the_demo_format() {
        // As `examples/demo.rs` and the benches write it.
        let stack = "0: shop::orders::load\n   at src/orders.rs:42:17\n1: shop::http::handle\n   at src/http.rs:88:9";
        assert_eq!(
            frames(stack),
            vec![
                f(0, "shop::orders::load", Some("src/orders.rs"), Some(42)),
                f(1, "shop::http::handle", Some("src/http.rs"), Some(88)),
            ]
        );
    }

    #[test]
    fn anyhow_header_and_notes_are_skipped() {
        let stack = "connection refused\n\nStack backtrace:\n   0: app::main\n             at src/main.rs:4:13\nnote: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n  not a frame";
        assert_eq!(
            frames(stack),
            vec![f(0, "app::main", Some("src/main.rs"), Some(4))]
        );
    }

    #[test]
    fn at_method_file_line() {
        let stack = "Error: boom\n    at Object.<anonymous> (/app/index.js:10:5)\n    at Module._compile (node:internal/modules/cjs/loader:1256:14)\n    at /app/anonymous.js:3:1\nException in thread \"main\" java.lang.IllegalStateException: x\n\tat com.shop.Orders.load(Orders.java:42)\n\tat com.shop.Native.call(Native Method)\n\t... 3 more";
        assert_eq!(
            frames(stack),
            vec![
                f(0, "Object.<anonymous>", Some("/app/index.js"), Some(10)),
                f(
                    1,
                    "Module._compile",
                    Some("node:internal/modules/cjs/loader"),
                    Some(1256)
                ),
                f(2, "<anonymous>", Some("/app/anonymous.js"), Some(3)),
                f(3, "com.shop.Orders.load", Some("Orders.java"), Some(42)),
                f(4, "com.shop.Native.call(Native Method)", None, None),
            ]
        );
    }

    #[test]
    fn dotnet() {
        let stack = "System.InvalidOperationException: x\n   at Shop.Orders.Load(Int32 id) in C:\\src\\Shop\\Orders.cs:line 42\n   at Shop.Program.Main()";
        assert_eq!(
            frames(stack),
            vec![
                f(
                    0,
                    "Shop.Orders.Load(Int32 id)",
                    Some("C:\\src\\Shop\\Orders.cs"),
                    Some(42)
                ),
                f(1, "Shop.Program.Main()", None, None),
            ]
        );
    }

    #[test]
    fn locations() {
        assert_eq!(split_location("src/a.rs:4:13"), ("src/a.rs", Some(4)));
        assert_eq!(split_location("src/a.rs:4"), ("src/a.rs", Some(4)));
        assert_eq!(split_location("src/a.rs"), ("src/a.rs", None));
        assert_eq!(split_location("C:\\a.rs:7:1"), ("C:\\a.rs", Some(7)));
        assert_eq!(split_location("C:\\a.rs"), ("C:\\a.rs", None));
        assert_eq!(
            split_location("a.rs:99999999999:1"),
            ("a.rs:99999999999", Some(1))
        );
        assert_eq!(split_location(":"), (":", None));
    }

    #[test]
    fn not_frames() {
        for text in [
            "",
            "just a message",
            "12:30:45 server started",
            "at",
            "foo(bar)",
            "1:x",
        ] {
            assert!(parse_stack(text, MAX_FRAMES_TEXT).is_empty(), "{text:?}");
        }
    }

    #[test]
    fn at_most_100_frames_and_a_text_budget() {
        let stack: String = (0..500)
            .map(|i| format!("{i}: f{i}\n   at src/f.rs:{i}:1\n"))
            .collect();
        let parsed = parse_stack(&stack, MAX_FRAMES_TEXT);
        assert_eq!(parsed.len(), MAX_PARSED_FRAMES);
        assert_eq!(parsed.last().map(|f| f.level), Some(99));

        let long = "m".repeat(1000);
        let stack: String = (0..50)
            .map(|i| format!("{i}: {long}\n   at {long}.rs:1:1\n"))
            .collect();
        let parsed = parse_stack(&stack, MAX_FRAMES_TEXT);
        let text: usize = parsed
            .iter()
            .map(|f| f.method.as_str().len() + f.file_name.as_ref().map_or(0, |n| n.as_str().len()))
            .sum();
        assert!(text <= MAX_FRAMES_TEXT, "{text}");
        assert!(parsed.len() >= 7, "{}", parsed.len());
        assert!(parse_stack(&stack, 0).is_empty());
        assert!(parse_stack(&stack, 999).is_empty());
        let one = parse_stack(&stack, 1000);
        assert_eq!(one.len(), 1);
        assert!(one[0].file_name.is_none());
        assert_eq!(parse_stack(&stack, 2003).len(), 1);
    }

    proptest! {
        #[test]
        fn never_panics(s in "(([0-9]{1,3}: |at |\\s+|[a-z:()]+|0x1 - |\\n| in |:line )){0,40}") {
            let parsed = parse_stack(&s, MAX_FRAMES_TEXT);
            prop_assert!(parsed.len() <= MAX_PARSED_FRAMES);
            for (i, frame) in parsed.iter().enumerate() {
                prop_assert_eq!(frame.level as usize, i);
                prop_assert!(!frame.method.as_str().is_empty());
            }
        }

        #[test]
        fn never_panics_on_any_text(s in any::<String>()) {
            let _ = parse_stack(&s, MAX_FRAMES_TEXT);
        }
    }
}
