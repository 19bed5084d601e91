//! grove-ab: against its embedded server, against a URL, and its errors.

use grove::net::http::{Response, Server};
use std::process::Command;
use std::time::Duration;

fn grove_ab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_grove-ab"))
        .args(args)
        .env("GROVE_WORKERS", "2")
        .output()
        .expect("run grove-ab")
}

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} in:\n{out}"))[name.len()..]
        .trim()
}

#[test]
fn http_grove_ab_benchmarks_its_embedded_server() {
    let out = grove_ab(&["-n", "2000", "-c", "20", "-k"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field(&text, "Complete requests:"), "2000");
    assert_eq!(field(&text, "Failed requests:"), "0");
    assert_eq!(field(&text, "Concurrency Level:"), "20");
    assert_eq!(field(&text, "Document Length:"), "12 bytes");
    assert!(field(&text, "Requests per second:").ends_with("[#/sec] (mean)"));
    assert!(field(&text, "Keep-Alive requests:").parse::<u64>().unwrap() >= 1980 - 20);
    assert!(text.contains("Percentage of the requests served within a certain time (ms)"));
    assert!(text.contains("100%"));
    assert!(field(&text, "Time taken for tests:").ends_with("seconds"));
    assert!(field(&text, "Transfer rate:").ends_with("[Kbytes/sec] received"));
}

#[test]
fn http_grove_ab_against_a_url_counts_non_2xx() {
    let server = Server::bind("127.0.0.1:0", |req| {
        if req.path() == "/missing" {
            Response::new(404).body("nope")
        } else {
            Response::text("here")
        }
    })
    .unwrap();
    let addr = server.local_addr().unwrap();
    let handle = server.start();
    let url = format!("http://{addr}/missing");
    let out = grove_ab(&["-n", "300", "-c", "3", "-q", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(field(&text, "Complete requests:"), "300");
    assert_eq!(field(&text, "Non-2xx responses:"), "300");
    assert_eq!(field(&text, "Document Path:"), "/missing");
    // Without keep-alive every request is a new connection; with -t it stops on time.
    let url = format!("http://{addr}/");
    let out = grove_ab(&["-t", "1", "-c", "4", "-q", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(field(&text, "Complete requests:").parse::<u64>().unwrap() > 10);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn http_grove_ab_errors_are_one_line_and_non_zero() {
    for args in [
        vec!["-x"],
        vec!["-n", "lots"],
        vec!["-c", "10", "-n", "5"],
        vec!["https://127.0.0.1:1/"],
        vec!["http://"],
        vec!["-n", "1", "http://127.0.0.1:1/"],
    ] {
        let out = grove_ab(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.starts_with("grove-ab: ") || err.starts_with("usage:"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
