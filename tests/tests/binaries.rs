//! The project's own binaries as a user runs them: `kickoff-local` (the README's run command) and
//! `kickoff table create` and `kickoff api-key create` against a DynamoDB table.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use kickoff::domain::Role;
use kickoff::store::Store;
use kickoff_tests::{free_port, request, stack, start_kickoff_local, workspace_binary};

#[tokio::test]
async fn kickoff_local_serves_the_demo_with_the_dev_key() {
    let server = start_kickoff_local(&[]).await;
    let (port, base, log) = (server.port, server.base.clone(), server.log.clone());
    let a = request(
        "GET",
        &format!("{base}/api/v1/pipelines?hydrate=false&name=training&version=45"),
        &[("authorization", "Bearer dev-key")],
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    assert_eq!(a.json["items"][0]["body"]["version"], "45");
    let printed = std::fs::read_to_string(&log).expect("log");
    assert!(printed.contains(&format!("listening on http://127.0.0.1:{port}")), "{printed}");
    assert!(!printed.contains("dev-key"), "the key is not printed back: {printed}");
    let a =
        request("GET", &format!("{base}/api/v1/pipelines"), &[("authorization", "Bearer other")], "").await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn kickoff_local_prints_a_fresh_key_without_a_dev_key() {
    let port = free_port();
    let mut child = Command::new(workspace_binary("kickoff-local"))
        .args(["--port", &port.to_string()])
        .env_remove("KICKOFF_DEV_API_KEY")
        .env_remove("KICKOFF_TABLE")
        .env_remove("KICKOFF_QUEUE_URL")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start kickoff-local");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let key = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("API key (write): ").nth(1).map(str::to_string))
        .expect("a printed key");
    // Keep reading what it prints after, as a terminal would.
    std::thread::spawn(move || lines.for_each(drop));
    let a = request(
        "GET",
        &format!("http://127.0.0.1:{port}/api/v1/runs"),
        &[("authorization", &format!("Bearer {key}"))],
        "",
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
}

#[tokio::test]
async fn the_admin_command_creates_a_hashed_key_in_the_table() {
    let Some(stack) = stack("the_admin_command_creates_a_hashed_key_in_the_table") else {
        return;
    };
    let table = stack.new_table("cli").await;
    let name = table.table_name().to_string();
    let run = |args: &[&str]| {
        Command::new(workspace_binary("kickoff"))
            .args(args)
            .env("KICKOFF_TABLE", &name)
            .env("AWS_ENDPOINT_URL_DYNAMODB", &stack.dynamodb)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .output()
            .expect("run kickoff")
    };
    let out = run(&["api-key", "create", "--role", "read", "--name", "ci"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();
    assert!(secret.starts_with("kk_") && secret.len() == 67, "{secret}");
    let store = Store::new(Arc::new(table));
    assert_eq!(store.find_api_key(&secret).await.expect("find").map(|k| k.role), Some(Role::Read));

    // The secret itself is nowhere in the table.
    let items = stack.dynamodb().await.scan().table_name(&name).send().await.expect("scan");
    let dump = format!("{:?}", items.items());
    assert!(!dump.contains(&secret) && !dump.contains(&secret[3..]), "only the hash is stored");

    let bad = run(&["api-key", "create", "--role", "admin"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role"));
    let missing = run(&["api-key", "create"]);
    assert!(!missing.status.success());

    // The lifecycle: a key that expires, the list (ids, never secrets), a revocation.
    let out = run(&["api-key", "create", "--role", "write", "--name", "deploy", "--expires-in", "90d"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deploy = String::from_utf8(out.stdout).expect("utf-8").trim().to_string();
    let record = store.find_api_key(&deploy).await.expect("find").expect("stored");
    let days = (record.expires_at.expect("expires") - record.created).num_days();
    assert_eq!(days, 90);
    for bad in ["0d", "3651d", "12", "1w", "-5m"] {
        let out = run(&["api-key", "create", "--role", "read", "--expires-in", bad]);
        assert!(!out.status.success(), "--expires-in {bad} is refused");
    }
    let out = run(&["api-key", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(listed.contains(&format!("{}\twrite\tdeploy\t", record.id())), "{listed}");
    assert!(listed.contains("\tread\tci\t"), "{listed}");
    assert!(!listed.contains(&deploy[3..]) && !listed.contains(&secret[3..]), "no secret in the list");
    let out = run(&["api-key", "revoke", record.id()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoked = store.find_api_key(&deploy).await.expect("find").expect("kept");
    assert!(revoked.revoked_at.is_some() && !revoked.usable(chrono::Utc::now()));
    let out = run(&["api-key", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\tdeploy\t")
            && String::from_utf8_lossy(&out.stdout).contains("revoked")
    );
    assert!(!run(&["api-key", "revoke", "ffffffffffff"]).status.success(), "an unknown id fails");
}

#[tokio::test]
async fn the_table_is_made_by_command_and_a_missing_one_is_one_clear_line() {
    let Some(stack) = stack("the_table_is_made_by_command_and_a_missing_one_is_one_clear_line") else {
        return;
    };
    let name = format!("made-{}", uuid::Uuid::new_v4().simple());
    let with_env = |mut cmd: Command, endpoint: &str| {
        cmd.env("KICKOFF_TABLE", &name)
            .env_remove("KICKOFF_QUEUE_URL")
            .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1");
        cmd
    };
    let one_clear_line = |out: &std::process::Output, says: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "fails: {err}");
        assert!(err.trim().lines().count() == 1 && err.contains(says), "one line saying {says:?}: {err}");
        assert!(!err.contains("ServiceError") && !err.contains("{ "), "no debug dump: {err}");
    };

    // A missing table: kickoff-local and the key command say how to make it, in one line.
    let local = |args: &[&str]| {
        let mut cmd = Command::new(workspace_binary("kickoff-local"));
        cmd.args(args).args(["--port", &kickoff_tests::free_port().to_string()]);
        with_env(cmd, &stack.dynamodb)
    };
    let out = local(&[]).output().expect("kickoff-local");
    one_clear_line(&out, "kickoff table create");
    let mut key = Command::new(workspace_binary("kickoff"));
    key.args(["api-key", "create", "--role", "write"]);
    one_clear_line(&with_env(key, &stack.dynamodb).output().expect("kickoff"), "kickoff table create");

    // An endpoint that does not answer: one line naming it.
    let dead = format!("http://127.0.0.1:{}", kickoff_tests::free_port());
    let mut create = Command::new(workspace_binary("kickoff"));
    create.args(["table", "create"]);
    one_clear_line(&with_env(create, &dead).output().expect("kickoff"), "cannot reach DynamoDB");

    // `kickoff table create` makes it as the template declares it (TTL included); twice is fine.
    for expected in ["created", "exists already"] {
        let mut create = Command::new(workspace_binary("kickoff"));
        create.args(["table", "create"]);
        let out = with_env(create, &stack.dynamodb).output().expect("kickoff");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains(expected),
            "{said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let client = stack.dynamodb().await;
    let ttl = client.describe_time_to_live().table_name(&name).send().await.expect("ttl");
    let ttl = ttl.time_to_live_description().and_then(|d| d.attribute_name()).map(str::to_string);
    assert_eq!(ttl.as_deref(), Some(kickoff::store::table::TTL_ATTRIBUTE));
    let described = client.describe_table().table_name(&name).send().await.expect("describe");
    let indexes: Vec<String> = described
        .table()
        .map(|t| {
            t.global_secondary_indexes().iter().filter_map(|i| i.index_name()).map(str::to_string).collect()
        })
        .unwrap_or_default();
    assert_eq!(indexes.len(), 2, "{indexes:?}");

    // Now the server starts on it and serves the demo.
    let port = kickoff_tests::free_port();
    let mut cmd = Command::new(workspace_binary("kickoff-local"));
    cmd.args(["--port", &port.to_string()]).env("KICKOFF_DEV_API_KEY", "dev-key");
    let mut server = tokio::process::Command::from(with_env(cmd, &stack.dynamodb))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kickoff-local");
    let url = format!("http://127.0.0.1:{port}/api/v1/pipelines");
    let mut status = 0;
    for _ in 0..100 {
        if let Ok(a) =
            kickoff_tests::try_request("GET", &url, &[("authorization", "Bearer dev-key")], "").await
        {
            status = a.status;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = server.kill().await;
    assert_eq!(status, 200, "kickoff-local serves on the table it was given");
}
