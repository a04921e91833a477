//! Helpers for Kickoff's tests: an HTTP client, the embedded server on a free port, and the local stack
//! (DynamoDB Local and the SQS emulator, started by `infra/scripts/test-all.sh`).
//!
//! Tests that need the local stack call [`stack`]. Without it they print `SKIPPED` and pass under a
//! plain `cargo test`; the README's test command sets `KICKOFF_REQUIRE_STACK=1`, which turns a missing
//! stack into a failure, so nothing is skipped there.

pub mod blocks;
pub mod walk;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kickoff::domain::{ApiKey, Role};
use kickoff::queue::memory::MemoryQueue;
use kickoff::App;
use serde_json::Value;

/// An HTTP answer: status, headers and body (parsed as JSON when it is JSON, else `Value::Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub raw: Bytes,
    pub json: Value,
}

/// Sends one request; `headers` are `(name, value)` pairs.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
    try_request(method, url, headers, body).await.unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Sends one request; an error if no complete answer came (the server is down or died meanwhile).
pub async fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Answer, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Ok(Answer { status, headers, raw, json })
}

/// The embedded server on a free port, with a write key and a read key.
pub struct Server {
    pub base: String,
    pub app: App,
    pub queue: Arc<MemoryQueue>,
    pub write_key: String,
    pub read_key: String,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `Authorization: Bearer <write key>`.
    pub fn auth(&self) -> String {
        format!("Bearer {}", self.write_key)
    }

    pub fn read_auth(&self) -> String {
        format!("Bearer {}", self.read_key)
    }
}

/// The tests' blocks and notification targets listen on loopback over http: this process opts in to
/// the `loopback` egress policy, as the embedded server does (`docs/security.md`).
pub fn allow_loopback() {
    kickoff::egress::set(kickoff::egress::Policy::Loopback);
}

/// Starts the embedded server's HTTP surface on an in-memory app, with the demo pipeline seeded.
pub async fn spawn_app() -> Server {
    allow_loopback();
    let (app, queue) = App::memory();
    let now = app.clock.now();
    let (write_key, w) = ApiKey::generate(Role::Write, "test-write", now);
    let (read_key, r) = ApiKey::generate(Role::Read, "test-read", now);
    app.store.put_api_key(&w).await.expect("write key");
    app.store.put_api_key(&r).await.expect("read key");
    kickoff::demo::seed(&app).await.expect("demo seed");
    kickoff::demo::seed_schedule(&app, None).await.expect("demo schedule");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(kickoff::http::local::serve(Arc::new(app.clone()), listener));
    Server { base: format!("http://{addr}"), app, queue, write_key, read_key }
}

/// `kickoff-local` as a user runs it (the README's run command): in memory, the write key `dev-key`,
/// on a free port, with `env` added; its output in `log`.
pub struct LocalServer {
    pub port: u16,
    pub base: String,
    pub log: std::path::PathBuf,
    _group: ChildGroup,
}

/// Starts [`LocalServer`] and waits until it listens.
pub async fn start_kickoff_local(env: &[(&str, &str)]) -> LocalServer {
    let port = free_port();
    let mut cmd = std::process::Command::new(workspace_binary("kickoff-local"));
    cmd.args(["--port", &port.to_string()])
        .env("KICKOFF_DEV_API_KEY", "dev-key")
        .env_remove("KICKOFF_TABLE")
        .env_remove("KICKOFF_QUEUE_URL")
        .envs(env.iter().copied());
    let log = std::env::temp_dir().join(format!("kickoff-local-{port}.log"));
    let group = ChildGroup::spawn(cmd, &log);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    LocalServer { port, base: format!("http://127.0.0.1:{port}"), log, _group: group }
}

/// Endpoints of the local stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub dynamodb: String,
    pub sqs: String,
}

/// The local stack, or `None` (after printing `SKIPPED: <test>`) when it is not running; panics if
/// `KICKOFF_REQUIRE_STACK=1`.
pub fn stack(test: &str) -> Option<Stack> {
    let dynamodb = std::env::var("KICKOFF_TEST_DYNAMODB_ENDPOINT").ok().filter(|v| !v.is_empty());
    let sqs = std::env::var("KICKOFF_TEST_SQS_ENDPOINT").ok().filter(|v| !v.is_empty());
    match (dynamodb, sqs) {
        (Some(dynamodb), Some(sqs)) => Some(Stack { dynamodb, sqs }),
        _ if std::env::var("KICKOFF_REQUIRE_STACK").as_deref() == Ok("1") => {
            panic!("{test}: KICKOFF_REQUIRE_STACK=1 but the local stack's endpoints are not set")
        }
        _ => {
            eprintln!("SKIPPED: {test} needs the local stack (run infra/scripts/test-all.sh)");
            None
        }
    }
}

/// The venv `.tools/<venv>` that `infra/scripts/tools.sh` installs, or `None` (after printing
/// `SKIPPED: <test>`) when it is missing; panics if `KICKOFF_REQUIRE_STACK=1`.
pub fn tool_venv(venv: &str, test: &str) -> Option<std::path::PathBuf> {
    let dir = workspace_root().join(".tools").join(venv);
    if dir.join("bin/python").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("KICKOFF_REQUIRE_STACK").as_deref() != Ok("1"),
        "{test}: KICKOFF_REQUIRE_STACK=1 but .tools/{venv} is not installed (infra/scripts/tools.sh)"
    );
    eprintln!("SKIPPED: {test} needs .tools/{venv} (infra/scripts/tools.sh)");
    None
}

impl Stack {
    /// AWS SDK config for the emulators (fixed test credentials, us-east-1).
    pub async fn aws(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let conf =
            aws_sdk_dynamodb::config::Builder::from(&self.aws().await).endpoint_url(&self.dynamodb).build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        let conf = aws_sdk_sqs::config::Builder::from(&self.aws().await).endpoint_url(&self.sqs).build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    /// A fresh table (a unique name per test) created from the one table definition.
    pub async fn new_table(&self, prefix: &str) -> kickoff::store::dynamo::DynamoTable {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let table = kickoff::store::dynamo::DynamoTable::new(self.dynamodb().await, name);
        table.create().await.expect("create table on DynamoDB Local");
        table
    }

    /// A fresh queue; returns its URL.
    pub async fn new_queue(&self, prefix: &str) -> String {
        self.create_queue(prefix, None).await
    }

    /// A fresh queue whose received messages come back after `seconds` unless deleted; returns its URL.
    pub async fn new_queue_with_visibility(&self, prefix: &str, seconds: u32) -> String {
        self.create_queue(prefix, Some(seconds)).await
    }

    async fn create_queue(&self, prefix: &str, visibility_s: Option<u32>) -> String {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        kickoff::queue::sqs::SqsQueue::create(&self.sqs().await, &name, visibility_s)
            .await
            .expect("create queue on the emulator")
    }
}

/// The workspace root (for tests that read the repository's files).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The first ```sh block after the README heading `## <heading>`.
pub fn readme_block(heading: &str) -> String {
    readme_code(heading, "sh")
}

/// The first ```` ```<language> ```` block of the README section `heading`.
pub fn readme_code(heading: &str, language: &str) -> String {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let section = readme
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_else(|| panic!("no README section {heading:?}"));
    let block = section
        .split(&format!("```{language}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {language} block in README section {heading:?}"));
    block.split("\n```").next().expect("the block's end").to_string()
}

/// Runs a README block with bash (`set -euo pipefail`) against a server on `port` (in place of the
/// README's 6789), with `env`, in a fresh temporary directory; its standard output. Fails on a failure.
pub fn run_readme_block(block: &str, port: u16, env: &[(&str, &str)]) -> String {
    let script = block.replace("localhost:6789", &format!("localhost:{port}"));
    let dir = std::env::temp_dir().join(format!("kickoff-readme-{port}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .envs(env.iter().copied())
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{script}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A child process group (a server under test) that is killed, with its children, when dropped.
pub struct ChildGroup {
    child: std::process::Child,
}

impl ChildGroup {
    /// Kills the process group with SIGKILL (no clean-up, as a crash) and reaps the child.
    pub fn sigkill(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }

    /// The process id of its leader, which is the group's id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (reaping it if so).
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Starts `cmd` in a process group of its own, output to `log`.
    pub fn spawn(cmd: std::process::Command, log: &std::path::Path) -> ChildGroup {
        let out = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        Self::spawn_to(cmd, out)
    }

    /// As [`ChildGroup::spawn`], adding to the end of `log` (one log across restarts).
    pub fn spawn_appending(cmd: std::process::Command, log: &std::path::Path) -> ChildGroup {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        Self::spawn_to(cmd, out)
    }

    fn spawn_to(mut cmd: std::process::Command, out: std::fs::File) -> ChildGroup {
        use std::os::unix::process::CommandExt;
        let err = out.try_clone().expect("log file");
        cmd.stdout(out).stderr(err).stdin(std::process::Stdio::null()).process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        ChildGroup { child }
    }
}

impl Drop for ChildGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A binary of the workspace, as `cargo build` leaves it in `target/debug` (or `$CARGO_TARGET_DIR`).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(path.exists(), "{} is not built: run `cargo build --workspace` first", path.display());
    path
}

/// The functions as deployed, locally: a fresh table and queue on the local stack with a write key and
/// the demo data, and the function binaries under `cargo lambda watch` on a free port, routed as
/// API Gateway routes them (the workspace's router metadata). Every call the functions make to
/// DynamoDB, SQS and Lambda goes through the IAM enforcer ([`Enforcer`]), each function signed as itself
/// and held to its own policy in `infra/template.yaml`.
pub struct Deployed {
    pub base: String,
    pub store: kickoff::store::Store,
    pub queue: kickoff::queue::sqs::SqsQueue,
    /// The run queue as the worker's event source mapping reads it: through the enforcer, as `worker`.
    pub feed: Feed,
    pub write_key: String,
    pub read_key: String,
    pub schedule_token: String,
    pub enforcer: Enforcer,
    _watch: ChildGroup,
}

/// The block functions the deployments may invoke (the template's `BlockFunctionArns`).
pub const BLOCK_FUNCTION_ARNS: &str = "arn:aws:lambda:us-east-1:123456789012:function:echo-block";

/// The local IAM enforcer (`infra/iam/enforcer.py`) for one deployment: DynamoDB, SQS and Lambda
/// endpoints that check each call against the caller's policy in `template` and record it in `record`.
pub struct Enforcer {
    pub dynamodb: String,
    pub sqs: String,
    pub lambda: String,
    pub record: std::path::PathBuf,
    _child: ChildGroup,
}

impl Enforcer {
    /// Starts the enforcer in front of `stack` for this table and queue, passing Lambda calls on to
    /// `lambda_upstream`; waits until it listens.
    pub fn start(
        stack: &Stack,
        table: &str,
        queue_url: &str,
        lambda_upstream: &str,
        template: &std::path::Path,
        record: std::path::PathBuf,
    ) -> Enforcer {
        let root = workspace_root();
        let python = root.join(".tools/venv/bin/python");
        assert!(python.exists(), "{} is missing: run infra/scripts/tools.sh", python.display());
        if let Some(dir) = record.parent() {
            std::fs::create_dir_all(dir).expect("record folder");
        }
        let ready = record.with_extension("ready");
        let _ = std::fs::remove_file(&ready);
        let mut cmd = std::process::Command::new(python);
        cmd.arg(root.join("infra/iam/enforcer.py")).args(["--template"]).arg(template).args([
            "--table",
            table,
            "--queue",
            &format!("RunQueue={queue_url}"),
            "--dynamodb",
            &stack.dynamodb,
            "--sqs",
            &stack.sqs,
            "--lambda",
            lambda_upstream,
            "--parameter",
            &format!("BlockFunctionArns={BLOCK_FUNCTION_ARNS}"),
            "--record",
        ]);
        cmd.arg(&record).arg("--ready").arg(&ready);
        let child = ChildGroup::spawn(cmd, &record.with_extension("log"));
        let started = std::time::Instant::now();
        let urls: serde_json::Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break serde_json::from_str(&text).expect("the enforcer's URLs");
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the IAM enforcer did not start; see {}",
                record.with_extension("log").display()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let url = |k: &str| urls[k].as_str().expect("url").to_string();
        Enforcer { dynamodb: url("dynamodb"), sqs: url("sqs"), lambda: url("lambda"), record, _child: child }
    }

    /// The decisions recorded so far: (function, action, symbolic resource, decision).
    pub fn decisions(&self) -> Vec<(String, String, String, String)> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                let f = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                (f("function"), f("action"), f("resource"), f("decision"))
            })
            .collect()
    }
}

/// Where the deployments' enforcers record every call, for the least-privilege check that the test
/// command runs after the suite (`infra/iam/check.py`).
pub fn iam_record_dir() -> std::path::PathBuf {
    std::env::var_os("KICKOFF_IAM_RECORD_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("iam-usage"))
}

pub async fn deploy(stack: &Stack, prefix: &str) -> Deployed {
    let template = workspace_root().join("infra/template.yaml");
    deploy_with_template(stack, prefix, &template, iam_record_dir()).await
}

/// [`deploy`] with the policies of another template (the enforcer's own test), recording in `records`.
pub async fn deploy_with_template(
    stack: &Stack,
    prefix: &str,
    template: &std::path::Path,
    records: std::path::PathBuf,
) -> Deployed {
    let table = stack.new_table(prefix).await;
    let table_name = table.table_name().to_string();
    let queue_url = stack.new_queue(prefix).await;
    let store = kickoff::store::Store::new(Arc::new(table));

    // The deployment's data: a write key (as `kickoff api-key create` makes it) and the demo.
    let (app, _) = App::memory();
    let app = App { store: store.clone(), ..app };
    let (write_key, key) = ApiKey::generate(Role::Write, prefix, app.clock.now());
    store.put_api_key(&key).await.expect("key");
    let (read_key, key) = ApiKey::generate(Role::Read, prefix, app.clock.now());
    store.put_api_key(&key).await.expect("key");
    kickoff::demo::seed(&app).await.expect("seed");
    let schedule = kickoff::demo::seed_schedule(&app, None).await.expect("demo schedule");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let record = records.join(format!("{prefix}-{port}.jsonl"));
    let enforcer = Enforcer::start(stack, &table_name, &queue_url, &base, template, record);
    let mut cmd = std::process::Command::new("cargo");
    cmd.current_dir(workspace_root()).args([
        "lambda",
        "watch",
        "--ignore-changes",
        "--invoke-address",
        "127.0.0.1",
        "--invoke-port",
        &port.to_string(),
    ]);
    for (k, v) in [
        ("KICKOFF_TABLE", table_name.as_str()),
        ("KICKOFF_QUEUE_URL", queue_url.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", enforcer.dynamodb.as_str()),
        ("AWS_ENDPOINT_URL_SQS", enforcer.sqs.as_str()),
        // The worker calls `lambda` blocks through cargo lambda watch's Invoke API, and callback URLs
        // point at the routes it serves.
        ("AWS_ENDPOINT_URL_LAMBDA", enforcer.lambda.as_str()),
        ("KICKOFF_PUBLIC_URL", base.as_str()),
        ("KICKOFF_WEBHOOK_SECRET", crate::worker::SECRET),
        // The tests' blocks listen on loopback (`docs/security.md`'s opt-in).
        ("KICKOFF_EGRESS", "loopback"),
        // Each function signs as itself (its AWS_LAMBDA_FUNCTION_NAME), for the enforcer.
        ("KICKOFF_IAM_IDENTITY", "function"),
        ("AWS_ACCESS_KEY_ID", "unsigned"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_REGION", "us-east-1"),
    ] {
        cmd.args(["--env-var", &format!("{k}={v}")]);
    }
    let log = workspace_root().join("target").join(format!("cargo-lambda-watch-{prefix}-{port}.log"));
    let watch = ChildGroup::spawn(cmd, &log);
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(180),
            "cargo lambda watch did not start; see {}",
            log.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    // The event source mapping reads the queue with the worker's role.
    let worker_conf = aws_sdk_sqs::config::Builder::from(&stack.aws().await)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("worker", "local", None, None, "esm"))
        .endpoint_url(&enforcer.sqs)
        .build();
    let feed = Feed {
        sqs: aws_sdk_sqs::Client::from_conf(worker_conf),
        queue_url: queue_url.clone(),
        base: base.clone(),
    };
    let queue = kickoff::queue::sqs::SqsQueue::new(stack.sqs().await, queue_url);
    Deployed {
        base,
        store,
        queue,
        feed,
        write_key,
        read_key,
        schedule_token: schedule.token,
        enforcer,
        _watch: watch,
    }
}

/// AWS's event source mapping, played locally: receives the run queue with the worker's role (through
/// the enforcer) and hands each batch to the `worker` function through cargo lambda watch's Invoke API.
#[derive(Clone)]
pub struct Feed {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    base: String,
}

impl Feed {
    /// Invokes the worker function with these SQS messages as a real SQS event; returns the ids its
    /// partial batch response names as failed.
    pub async fn invoke_worker(&self, messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
        use aws_lambda_events::event::sqs::SqsBatchResponse;
        let event = kickoff::queue::sqs::lambda_event(messages, &self.queue_url);
        let answer = request(
            "POST",
            &format!("{}/2015-03-31/functions/worker/invocations", self.base),
            &[("content-type", "application/json")],
            serde_json::to_vec(&event).expect("event"),
        )
        .await;
        assert_eq!(answer.status, 200, "worker invoke: {}", String::from_utf8_lossy(&answer.raw));
        let response: SqsBatchResponse = serde_json::from_slice(&answer.raw)
            .unwrap_or_else(|e| panic!("batch response {e}: {}", String::from_utf8_lossy(&answer.raw)));
        response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
    }

    /// One poll: receives up to 10 messages (waiting up to a second), invokes `worker` with them and
    /// deletes those its batch response does not name as failures. Returns the messages delivered.
    pub async fn once(&self) -> Vec<kickoff::queue::Message> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the SQS emulator");
        let messages = out.messages().to_vec();
        if messages.is_empty() {
            return Vec::new();
        }
        let seen = messages
            .iter()
            .filter_map(|m| m.body())
            .map(|body| serde_json::from_str(body).expect("a Kickoff message"))
            .collect();
        let failed = self.invoke_worker(&messages).await;
        assert!(failed.is_empty(), "the worker failed messages {failed:?}");
        for m in &messages {
            self.sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
        seen
    }

    /// Polls for ever, in a task of its own (aborted when the handle drops).
    pub fn in_background(&self) -> AbortOnDrop {
        let feed = self.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                feed.once().await;
            }
        }))
    }
}

/// A task that is aborted when this is dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Deployed {
    /// See [`Feed::invoke_worker`].
    pub async fn invoke_worker(&self, messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
        self.feed.invoke_worker(messages).await
    }

    /// Drains the run queue into the worker function as real SQS events (nothing feeds SQS to a Lambda
    /// locally), until `run` has finished and the queue is quiet. Returns every message it delivered.
    pub async fn pump(&self, run: uuid::Uuid, limit: std::time::Duration) -> Vec<kickoff::queue::Message> {
        let started = std::time::Instant::now();
        let mut seen = Vec::new();
        loop {
            let delivered = self.feed.once().await;
            if !delivered.is_empty() {
                seen.extend(delivered);
                continue;
            }
            let detail = self.store.get_run(run).await.expect("get run").expect("run").value;
            if detail.run.status.is_finished() {
                return seen;
            }
            assert!(started.elapsed() < limit, "the run did not finish in {limit:?}: {detail:#?}");
        }
    }
}

/// Writes an active `time` schedule of the demo pipeline (seeded already) with `interval`, in UTC.
pub async fn new_time_schedule(app: &App, interval: &str) -> kickoff::domain::Schedule {
    use kickoff::domain::schedule::ScheduleFields;
    use kickoff::domain::{Schedule, ScheduleStatus, ScheduleType};
    let now = app.clock.now();
    let fields = ScheduleFields {
        name: Some(format!("every {interval}")),
        schedule_type: Some(ScheduleType::Time),
        schedule_interval: Some(interval.to_string()),
        status: Some(ScheduleStatus::Active),
        ..ScheduleFields::default()
    };
    loop {
        let id = kickoff::clock::new_int_id(app.clock.now());
        let s = Schedule::create(
            id,
            kickoff::demo::PIPELINE_NAME,
            fields.clone(),
            kickoff::clock::new_token(),
            now,
        )
        .expect("schedule");
        if app.store.create_schedule(&s).await.expect("create schedule") {
            return s;
        }
    }
}

/// A run of `build` with no block runs and a fresh id, for the benchmark's history views.
pub fn bench_run(
    build: &kickoff::domain::Build,
    execution_date: chrono::DateTime<chrono::Utc>,
) -> kickoff::domain::Run {
    let now = chrono::Utc::now();
    let run = kickoff::domain::Run::new(
        build,
        uuid::Uuid::new_v4(),
        kickoff::clock::new_int_id(now),
        "bench".into(),
        execution_date,
        now,
    );
    kickoff::domain::Run {
        status: kickoff::domain::RunStatus::Completed,
        started_at: Some(now),
        completed_at: Some(now),
        ..run
    }
}

/// HMAC-SHA256 of `data` under `key`, as webhook providers sign (GitHub: `sha256=<hex of it>`).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}
