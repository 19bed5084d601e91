//! Real clients against grove's HTTP server: curl, Python's http.client, and ab, with and
//! without keep-alive. A missing tool skips its test with a message, except under CI (`CI` set),
//! where `.ci/run` installs them and a missing one fails.

use grove::net::http::{Response, Server};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn server() -> (SocketAddr, grove::net::ServerHandle) {
    let s = Server::bind("127.0.0.1:0", |req| {
        Response::text(format!(
            "{} {} {}",
            req.method(),
            req.path(),
            String::from_utf8_lossy(req.body())
        ))
    })
    .unwrap();
    let addr = s.local_addr().unwrap();
    (addr, s.start())
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is not installed (CI must install it)"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

#[test]
fn http_clients_curl_plain_and_keep_alive() {
    if !have("curl") {
        return;
    }
    let (addr, h) = server();
    let url = format!("http://{addr}/a");
    let out = Command::new("curl")
        .args(["-sS", "--http1.0", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "GET /a ");
    // Two URLs on one connection (curl reuses it: "Re-using existing connection").
    let url2 = format!("http://{addr}/b");
    let out = Command::new("curl")
        .args(["-sS", "-v", "-d", "payload", &url, &url2])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, "POST /a payloadPOST /b payload");
    assert!(
        stderr.to_lowercase().contains("re-using") || stderr.to_lowercase().contains("reusing"),
        "{stderr}"
    );
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_clients_python_http_client_keeps_the_connection() {
    if !have("python3") {
        return;
    }
    let (addr, h) = server();
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("{ip}", {port}, timeout=10)
out = []
for i in range(3):
    c.request("GET", "/k%d" % i)
    r = c.getresponse()
    out.append(r.read().decode())
    sock = c.sock
c.request("POST", "/post", body=b"x" * 3000, headers={{"Content-Type": "application/octet-stream"}})
r = c.getresponse()
body = r.read().decode()
out.append(str(len(body)))
assert c.sock is sock, "connection was not kept alive"
print("|".join(out))
"#,
        ip = addr.ip(),
        port = addr.port()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("GET /k0 |GET /k1 |GET /k2 |{}", "POST /post ".len() + 3000)
    );
    h.stop(Duration::from_secs(1));
}

#[test]
fn http_clients_ab_with_and_without_keep_alive() {
    if !have("ab") {
        return;
    }
    let (addr, h) = server();
    let url = format!("http://{addr}/");
    for extra in [None, Some("-k")] {
        let mut args = vec!["-n", "500", "-c", "10"];
        args.extend(extra);
        args.push(&url);
        let out = Command::new("ab").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Complete requests:      500"), "{text}");
        assert!(text.contains("Failed requests:        0"), "{text}");
        if extra.is_some() {
            assert!(text.contains("Keep-Alive requests:    500"), "{text}");
        }
    }
    h.stop(Duration::from_secs(1));
}
