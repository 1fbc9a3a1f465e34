//! The example plugins of PLUGINS.md work as documented, through the real
//! host.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use vpcrouter::health::State;
use vpcrouter::plugin::{self, Bounds, Compiler, PluginEngine, PluginRuntime, Role};
use vpcrouter::spec::RouteSpec;
use vpcrouter::spec_store::SpecStore;

fn runtime() -> PluginRuntime {
    PluginRuntime::new(
        PluginEngine::new(Compiler::InProcess).unwrap(),
        Bounds::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn routes_txt_reads_and_follows_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.txt");
    std::fs::write(
        &file,
        "# rack 1\n10.55.16.0/24  10.33.20.142 10.33.20.143\n",
    )
    .unwrap();
    let specs = Arc::new(SpecStore::default());
    let loaded = runtime()
        .load_config_source(&common::example("routes-txt"), specs.subscribe())
        .await
        .unwrap();
    let options = [("routes".to_string(), file.display().to_string())];
    let configured = loaded.configure(&options).await.unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let _handle = plugin::spawn(configured, Role::Config(specs.clone()), shutdown);
    let mut current = specs.subscribe();
    let expect = |json: &str| RouteSpec::from_json(json.as_bytes()).unwrap();
    let first = expect(r#"{"10.55.16.0/24": ["10.33.20.142", "10.33.20.143"]}"#);
    tokio::time::timeout(
        Duration::from_secs(10),
        current.wait_for(|s| s.as_deref() == Some(&first)),
    )
    .await
    .unwrap()
    .unwrap();
    std::fs::write(&file, "10.66.0.0/16 10.33.30.22 # moved\n").unwrap();
    let second = expect(r#"{"10.66.0.0/16": ["10.33.30.22"]}"#);
    tokio::time::timeout(
        Duration::from_secs(10),
        current.wait_for(|s| s.as_deref() == Some(&second)),
    )
    .await
    .unwrap()
    .unwrap();
    // Emptied (as a writer does for a moment): the plugin reports an error
    // instead of an empty spec, and the spec in force stays.
    let errors = || {
        let labels = vpcrouter::metrics::PluginCallLabels {
            plugin: "routes-txt".into(),
            call: "on-event".into(),
            outcome: "error".into(),
        };
        vpcrouter::metrics::global()
            .plugin_calls
            .get_or_create(&labels)
            .get()
    };
    let before = errors();
    std::fs::write(&file, "").unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while errors() == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the empty file was read and refused");
    assert_eq!(current.borrow().as_deref(), Some(&second));
}

#[tokio::test]
async fn any_port_is_healthy_while_any_port_answers() {
    let closed = TcpListener::bind("127.0.0.91:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let open = TcpListener::bind("127.0.0.91:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let specs = Arc::new(SpecStore::default());
    specs
        .offer(
            "test",
            [("10.1.0.0/16".to_string(), vec!["127.0.0.91".to_string()])],
        )
        .unwrap();
    let ports = format!("{closed_port},{open_port}");
    let options = [("ports", ports.as_str()), ("any_port_interval", "0.1")];
    let checkers =
        common::health_checkers(&specs, &[(common::example("any-port"), &options)]).await;
    let (board, handle) = (&checkers.board, &checkers.handles[0]);
    let mut status = handle.status();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| s.rounds.as_ref().is_some_and(|r| r.rounds >= 2)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        board.snapshot().state(&"127.0.0.91".parse().unwrap()),
        State::Healthy
    );
    drop(open);
    let mut changes = board.subscribe();
    tokio::time::timeout(
        Duration::from_secs(10),
        changes.wait_for(|s| !s.failed.is_empty()),
    )
    .await
    .unwrap()
    .unwrap();
}

/// chat-notifier, loaded with `--notify-plugin` and its options: the
/// routes the daemon makes and a drain come to the chat service as text.
#[test]
fn chat_notifier_posts_what_the_daemon_did() {
    let chat = common::receiver::Receiver::start(false);
    let dir = tempfile::tempdir().unwrap();
    let sim = common::repo().join("examples/sim-vpc.json");
    let chat_port = chat.port.to_string();
    let notifier = common::example("chat-notifier");
    let daemon = common::Daemon::start(
        &[
            "-m",
            "fixedconf",
            "--fixed_cidr",
            "10.55.0.0/16",
            "--fixed_hosts",
            "10.33.20.142:10.33.20.93",
            "-H",
            "none",
            "--sim-vpc",
            sim.to_str().unwrap(),
            "--notify-plugin",
            notifier.to_str().unwrap(),
            "--chat_host",
            "127.0.0.1",
            "--chat_port",
            &chat_port,
            "--chat_path",
            "/rooms/net",
            "--notify-interval",
            "0.2",
        ],
        dir.path(),
    );
    let said = || -> String {
        (chat.received().iter())
            .map(|r| r.json()["text"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    common::wait_until("the routes told", || {
        said().contains("create rtb-a 10.55.0.0/16").then_some(())
    });
    let routed = daemon.view("/route_info")["routes"]["10.55.0.0/16"]["ip"].clone();
    let router = routed.as_str().unwrap().to_string();
    let (status, _) = daemon.http("POST", &format!("/hosts/{router}/drain"), b"");
    assert_eq!(status, 200);
    let text = common::wait_until("the drain told", || {
        let text = said();
        text.contains(&format!("host_drain {router}"))
            .then_some(text)
    });
    assert!(text.contains("drain rtb-a 10.55.0.0/16"), "{text}");
}

/// The examples' code in PLUGINS.md is the code that builds and passes the
/// tests above (all but the module comment).
#[test]
fn plugins_md_shows_the_examples_as_they_are() {
    let doc = std::fs::read_to_string(common::repo().join("PLUGINS.md")).unwrap();
    for example in [
        "routes-txt/src/lib.rs",
        "any-port/src/lib.rs",
        "chat-notifier/src/lib.rs",
        "csv-routes/app.py",
        "tcp-latency/health.js",
    ] {
        let source =
            std::fs::read_to_string(common::repo().join("examples").join(example)).unwrap();
        let code: Vec<&str> = source
            .lines()
            .skip_while(|l| l.starts_with("//!") || l.is_empty())
            .collect();
        assert!(
            doc.contains(&code.join("\n")),
            "PLUGINS.md's copy of examples/{example} is out of date"
        );
    }
}
