//! Who may act on the emulator (issue #18): web pages in the user's browser must not be able
//! to wipe, replace or read state (CSRF, DNS rebinding), delete AWS resources with an
//! `<img>` tag, or turn the launchpad against the machine (SSRF); SDKs, the CLI and curl,
//! which send no `Origin`, must keep working. Every request here is what a browser would
//! send, written out by hand with the real emulator binary on the other end.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cryopod_tests::{Emulator, http};
use serde_json::Value;

const EVIL: &str = "http://evil.example";

fn port_of(emu: &Emulator) -> u16 {
    emu.endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("endpoint has a port")
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The answer's status and text.
fn sent(req: reqwest::blocking::RequestBuilder) -> (u16, String) {
    let resp = req.send().expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

fn error_of(text: &str) -> (String, String) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// An emulator holding one notebook, so that a wipe shows.
fn seeded() -> Emulator {
    let emu = Emulator::start();
    emu.notes("111111111111", "eu-west-1")
        .create_notebook("keep", &[]);
    emu
}

fn state_of(emu: &Emulator) -> Value {
    emu.summary()
}

#[test]
fn cross_site_management_posts_are_refused_and_own_or_originless_ones_work() {
    let emu = seeded();
    let before = state_of(&emu);
    let port = port_of(&emu);
    let paths = [
        "/_cryopod/state/reset",
        "/_cryopod/state/notes/reset",
        "/_cryopod/state?merge=overwrite",
        "/_cryopod/state/save",
        "/_cryopod/pods/pod/stolen/save",
        "/_cryopod/pods/launch?url=http%3A%2F%2F127.0.0.1%3A1%2Fx",
    ];
    let origins = [
        EVIL.to_string(),
        // Another port on localhost is the same site but not the emulator.
        "http://localhost:3000".to_string(),
        format!("http://evil.example:{port}"),
        "null".to_string(),
    ];
    for path in paths {
        for origin in &origins {
            let (status, text) = sent(
                http()
                    .post(format!("{}{path}", emu.endpoint))
                    .header("origin", origin.as_str())
                    .header("content-type", "text/plain")
                    .body("x"),
            );
            assert_eq!(status, 403, "POST {path} from {origin}: {text}");
            let (code, message) = error_of(&text);
            assert_eq!(code, "Forbidden", "{text}");
            assert!(message.contains(origin.as_str()), "{message}");
        }
        // A form post whose Origin the browser withholds still says where it comes from.
        let (status, text) = sent(
            http()
                .post(format!("{}{path}", emu.endpoint))
                .header("sec-fetch-site", "cross-site")
                .body("x"),
        );
        assert_eq!(status, 403, "POST {path} cross-site: {text}");
        assert!(error_of(&text).1.contains("cross-site"), "{text}");
    }
    assert_eq!(
        state_of(&emu),
        before,
        "a refused request changed the state"
    );
    let pods = emu.api_get("/_cryopod/pods");
    assert_eq!(pods["pods"], serde_json::json!([]), "{pods}");

    // What is not a web page of another site works as before.
    // curl, the CLI: no Origin at all.
    let (status, text) = sent(http().post(format!("{}/_cryopod/pods/pod/p/save", emu.endpoint)));
    assert_eq!(status, 200, "{text}");
    // The emulator's own pages, under each of its names.
    for origin in [
        emu.endpoint.clone(),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
    ] {
        let (status, text) = sent(
            http()
                .post(format!("{}/_cryopod/pods/pod/p/save", emu.endpoint))
                .header("origin", origin.as_str())
                .header("sec-fetch-site", "same-origin"),
        );
        assert_eq!(status, 200, "from {origin}: {text}");
    }
    let (status, text) = sent(
        http()
            .post(format!("{}/_cryopod/state/reset", emu.endpoint))
            .header("origin", emu.endpoint.as_str()),
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        emu.notes("111111111111", "eu-west-1")
            .list_notebooks()
            .is_empty()
    );
}

#[test]
fn a_foreign_host_cannot_read_the_summary_or_the_dump() {
    let emu = seeded();
    let port = port_of(&emu);
    for path in [
        "/_cryopod/state/summary",
        "/_cryopod/state",
        "/_cryopod/health",
    ] {
        let (status, text) = sent(
            http()
                .get(format!("{}{path}", emu.endpoint))
                .header("host", format!("evil.example:{port}")),
        );
        assert_eq!(status, 403, "GET {path}: {text}");
        let (code, message) = error_of(&text);
        assert_eq!(code, "Forbidden");
        assert!(message.contains("CRYOPOD_ALLOWED_HOSTS"), "{message}");
        // A page of another origin cannot read the dump either (a CORS-mode fetch).
        let (status, _) = sent(
            http()
                .get(format!("{}{path}", emu.endpoint))
                .header("origin", EVIL),
        );
        assert_eq!(status, 403, "GET {path} from {EVIL}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("localhost.localstack.cloud:{port}"),
    ] {
        let (status, text) = sent(
            http()
                .get(format!("{}/_cryopod/state/summary", emu.endpoint))
                .header("host", host.as_str()),
        );
        assert_eq!(status, 200, "Host {host}: {text}");
    }
}

#[test]
fn names_in_cryopod_allowed_hosts_are_accepted() {
    let emu = Emulator::start_with(&[], &[("CRYOPOD_ALLOWED_HOSTS", "cryopod.internal")]);
    let (status, text) = sent(
        http()
            .get(format!("{}/_cryopod/state/summary", emu.endpoint))
            .header("host", "cryopod.internal:4566"),
    );
    assert_eq!(status, 200, "{text}");
    let (status, _) = sent(
        http()
            .get(format!("{}/_cryopod/state/summary", emu.endpoint))
            .header("host", "other.internal:4566"),
    );
    assert_eq!(status, 403);
}

/// `GET /?Action=…` of the SQS query protocol, unsigned, as an `<img>` tag sends it.
fn sqs_get(emu: &Emulator, query: &str) -> reqwest::blocking::RequestBuilder {
    http().get(format!("{}/?{query}", emu.endpoint))
}

fn queue_url(emu: &Emulator, name: &str) -> Option<String> {
    let (status, text) = sent(sqs_get(
        emu,
        &format!("Action=GetQueueUrl&QueueName={name}"),
    ));
    (status == 200).then(|| {
        let start = text.find("<QueueUrl>").expect("QueueUrl") + "<QueueUrl>".len();
        let end = text[start..].find("</QueueUrl>").expect("end") + start;
        text[start..end].to_string()
    })
}

#[test]
fn a_cross_site_sqs_query_get_cannot_delete_a_queue() {
    let emu = Emulator::start();
    let (status, text) = sent(sqs_get(&emu, "Action=CreateQueue&QueueName=jobs"));
    assert_eq!(status, 200, "{text}");
    let url = queue_url(&emu, "jobs").expect("queue exists");
    let delete = format!("Action=DeleteQueue&QueueUrl={}", form_encode(&url));
    for (header, value) in [("origin", EVIL), ("sec-fetch-site", "cross-site")] {
        let (status, text) = sent(sqs_get(&emu, &delete).header(header, value));
        assert_eq!(status, 403, "{header}: {value}: {text}");
        assert!(text.contains("AccessDenied"), "{text}");
        assert!(queue_url(&emu, "jobs").is_some(), "the queue was deleted");
    }
    // Reads are data too.
    let (status, _) = sent(sqs_get(&emu, "Action=ListQueues").header("origin", EVIL));
    assert_eq!(status, 403);
    // Without a browser's headers (SDKs, the CLI, curl) it works as before.
    let (status, text) = sent(sqs_get(&emu, &delete));
    assert_eq!(status, 200, "{text}");
    assert!(queue_url(&emu, "jobs").is_none());
}

#[test]
fn a_cross_site_s3_put_follows_the_buckets_cors_rules() {
    let emu = Emulator::start();
    let app = "http://localhost:3000";
    let (status, text) = sent(http().put(format!("{}/web", emu.endpoint)));
    assert_eq!(status, 200, "{text}");
    let object = format!("{}/web/hello.txt", emu.endpoint);
    let put_from = |origin: &str| {
        sent(
            http()
                .put(&object)
                .header("origin", origin)
                .header("content-type", "text/plain")
                .body("hi"),
        )
    };
    let (status, text) = put_from(app);
    assert_eq!(status, 403, "no CORS rule yet: {text}");
    assert!(text.contains("AccessDenied"), "{text}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let s3 = cryopod_tests::s3(&emu.endpoint, "us-east-1", "000000000000");
    rt.block_on(async {
        let rule = aws_sdk_s3::types::CorsRule::builder()
            .allowed_origins(app)
            .allowed_methods("PUT")
            .allowed_methods("GET")
            .allowed_headers("content-type")
            .build()
            .expect("rule");
        s3.put_bucket_cors()
            .bucket("web")
            .cors_configuration(
                aws_sdk_s3::types::CorsConfiguration::builder()
                    .cors_rules(rule)
                    .build()
                    .expect("config"),
            )
            .send()
            .await
            .expect("PutBucketCors");
    });

    // The browser's preflight is answered from the rule.
    let resp = http()
        .request(reqwest::Method::OPTIONS, &object)
        .header("origin", app)
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .expect("preflight");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], app);
    assert!(
        resp.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap_or_default()
            .contains("PUT")
    );
    let resp = http()
        .put(&object)
        .header("origin", app)
        .body("hi")
        .send()
        .expect("PUT");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], app);
    let (status, body) = sent(http().get(&object));
    assert_eq!((status, body.as_str()), (200, "hi"));

    let (status, text) = put_from(EVIL);
    assert_eq!(status, 403, "{text}");
    let (status, _) = sent(
        http()
            .delete(&object)
            .header("origin", app)
            .header("sec-fetch-site", "same-site"),
    );
    assert_eq!(status, 403, "DELETE is not in the rule");
}

#[test]
fn a_browser_request_under_a_rebound_name_reaches_no_aws_data() {
    let emu = Emulator::start();
    let (status, _) = sent(http().put(format!("{}/data", emu.endpoint)));
    assert_eq!(status, 200);
    let (status, text) = sent(
        http()
            .get(format!("{}/data", emu.endpoint))
            .header("host", format!("evil.example:{}", port_of(&emu)))
            .header("sec-fetch-site", "same-origin"),
    );
    assert_eq!(status, 403, "{text}");
}

/// A TCP server that records what each connection sent, answering 404 (or `answer`).
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(answer: String) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                if let Ok(mut l) = log.lock() {
                    l.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        Recorder { port, seen }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[test]
fn the_launchpad_page_fetches_nothing_until_its_button_is_clicked() {
    let emu = Emulator::start();
    let target = Recorder::start(NOT_FOUND.into());
    let url = format!("http://127.0.0.1:{}/seed.cryopod", target.port);
    let page = format!(
        "{}/_cryopod/launchpad?url={}",
        emu.endpoint,
        form_encode(&url)
    );
    let resp = http()
        .get(&page)
        .header("sec-fetch-site", "cross-site")
        .send()
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    let html = resp.text().expect("html");
    assert!(
        html.contains(&url) && html.contains("inspect-button"),
        "{html}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        target.requests(),
        Vec::<String>::new(),
        "the GET fetched the URL"
    );

    // Another site cannot press the button for the user.
    let (status, _) = sent(
        http()
            .post(format!("{}/_cryopod/launchpad", emu.endpoint))
            .header("origin", EVIL)
            .body(format!("url={}", form_encode(&url))),
    );
    assert_eq!(status, 403);
    std::thread::sleep(Duration::from_millis(300));
    assert!(target.requests().is_empty());

    // The click (a same-origin POST) fetches.
    let (status, html) = sent(
        http()
            .post(format!("{}/_cryopod/launchpad", emu.endpoint))
            .header("origin", emu.endpoint.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("url={}", form_encode(&url))),
    );
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("404"), "{html}");
    assert_eq!(target.requests().len(), 1);
}

/// POSTs a launch of `url` as the CLI does; the status and the error message.
fn launch(emu: &Emulator, url: &str) -> (u16, String) {
    let (status, text) = sent(http().post(format!(
        "{}/_cryopod/pods/launch?url={}",
        emu.endpoint,
        form_encode(url)
    )));
    (status, text)
}

#[test]
fn launch_urls_that_reach_the_emulator_or_metadata_services_are_refused() {
    let emu = Emulator::start();
    let (status, _) = sent(sqs_get(&emu, "Action=CreateQueue&QueueName=jobs"));
    assert_eq!(status, 200);
    let qurl = form_encode(&queue_url(&emu, "jobs").expect("queue"));
    let p = port_of(&emu);
    for url in [
        format!("http://[::ffff:127.0.0.1]:{p}/?Action=DeleteQueue&QueueUrl={qurl}"),
        format!("http://[::127.0.0.1]:{p}/?Action=DeleteQueue&QueueUrl={qurl}"),
        format!("http://[64:ff9b::127.0.0.1]:{p}/x"),
        format!("http://2130706433:{p}/?Action=DeleteQueue&QueueUrl={qurl}"),
        format!("http://0177.0.0.1:{p}/x"),
        format!("http://0x7f.1:{p}/x"),
        format!("http://127.1.2.3:{p}/x"),
        format!("http://localhost:{p}/x"),
        format!("http://0.0.0.0:{p}/x"),
        "http://0.0.0.0:8080/x".to_string(),
        "http://[::]:8080/x".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_string(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
        "http://[fe80::1]/x".to_string(),
        "http://169.254.1.1/x".to_string(),
    ] {
        let (status, text) = launch(&emu, &url);
        assert_eq!(status, 400, "{url}: {text}");
        let (code, message) = error_of(&text);
        assert_eq!(code, "LaunchRefused", "{url}: {text}");
        assert!(message.contains("refusing"), "{url}: {message}");
    }
    assert!(
        queue_url(&emu, "jobs").is_some(),
        "a launch URL deleted the queue"
    );
}

#[test]
fn credentials_in_a_launch_url_are_never_sent_or_shown() {
    let emu = Emulator::start();
    let target = Recorder::start(NOT_FOUND.into());
    let url = format!(
        "http://user:s3cretpass@127.0.0.1:{}/seed.cryopod",
        target.port
    );
    let page = format!(
        "{}/_cryopod/launchpad?url={}",
        emu.endpoint,
        form_encode(&url)
    );
    let (status, html) = sent(http().get(&page));
    assert_eq!(status, 200);
    assert!(
        !html.contains("s3cretpass") && !html.contains("user:"),
        "{html}"
    );
    assert!(
        html.contains(&format!("http://127.0.0.1:{}/seed.cryopod", target.port)),
        "{html}"
    );
    let (_, html) = sent(
        http()
            .post(format!("{}/_cryopod/launchpad", emu.endpoint))
            .body(format!("url={}", form_encode(&url))),
    );
    assert!(!html.contains("s3cretpass"), "{html}");
    let (status, text) = launch(&emu, &url);
    assert_eq!(status, 400);
    assert!(!text.contains("s3cretpass"), "{text}");
    // A closed port and a refusing host read the same: no port scanning through errors.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let (_, text) = launch(&emu, &format!("http://127.0.0.1:{closed_port}/x"));
    let message = error_of(&text).1;
    assert_eq!(
        message,
        format!("launch: could not fetch http://127.0.0.1:{closed_port}/x")
    );
    let requests = target.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in requests {
        assert!(!r.to_ascii_lowercase().contains("authorization"), "{r}");
    }
}

#[test]
fn a_redirect_to_the_emulator_is_refused() {
    let emu = Emulator::start();
    let (status, _) = sent(sqs_get(&emu, "Action=CreateQueue&QueueName=jobs"));
    assert_eq!(status, 200);
    let qurl = form_encode(&queue_url(&emu, "jobs").expect("queue"));
    let to = format!(
        "http://[::ffff:127.0.0.1]:{}/?Action=DeleteQueue&QueueUrl={qurl}",
        port_of(&emu)
    );
    let redirect = Recorder::start(format!(
        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    let (status, text) = launch(&emu, &format!("http://127.0.0.1:{}/seed", redirect.port));
    assert_eq!(status, 400, "{text}");
    assert!(error_of(&text).1.contains("own address"), "{text}");
    assert_eq!(redirect.requests().len(), 1);
    assert!(
        queue_url(&emu, "jobs").is_some(),
        "the redirect deleted the queue"
    );
}

#[test]
fn management_pages_and_answers_refuse_framing() {
    let emu = Emulator::start();
    for path in [
        "/_cryopod/launchpad",
        "/_cryopod/health",
        "/_cryopod/nothing-here",
    ] {
        let resp = http()
            .get(format!("{}{path}", emu.endpoint))
            .send()
            .expect("GET");
        let h = resp.headers();
        assert_eq!(
            h["content-security-policy"], "frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
}
