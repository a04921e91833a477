//! The function crates, the route table, the cargo-lambda router and the SAM template name the same
//! functions with the same routes; the template's table matches `store::table`'s definition.

use std::collections::BTreeSet;

use kickoff::http::routes::ROUTES;
use kickoff::store::table;
use kickoff_tests::workspace_root;

/// Functions that no HTTP route calls.
const OTHER_FUNCTIONS: &[&str] = &["worker", "scheduler"];

fn camel(function: &str) -> String {
    function
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The resources of the template: logical id → its lines.
fn template_resources() -> Vec<(String, String)> {
    let text = read("infra/template.yaml");
    let resources = text.split("\nResources:\n").nth(1).expect("a Resources section");
    let resources = resources.split("\nOutputs:").next().unwrap_or(resources);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in resources.lines() {
        let is_id = line.starts_with("  ")
            && !line.starts_with("   ")
            && line.trim_end().ends_with(':')
            && !line.trim().starts_with('#');
        if is_id {
            out.push((line.trim().trim_end_matches(':').to_string(), String::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    out
}

#[test]
fn function_crates_match_the_route_table() {
    let dirs: BTreeSet<String> = std::fs::read_dir(workspace_root().join("functions"))
        .expect("functions/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    let mut functions: BTreeSet<String> = ROUTES.iter().map(|r| r.function.to_string()).collect();
    functions.extend(OTHER_FUNCTIONS.iter().map(|f| f.to_string()));
    assert_eq!(dirs, functions);
    for r in ROUTES {
        let main = read(&format!("functions/{}/src/main.rs", r.function));
        assert!(main.contains(&format!("serve(\"{}\")", r.function)), "{} serves itself", r.function);
        let manifest = read(&format!("functions/{}/Cargo.toml", r.function));
        assert!(manifest.contains(&format!("name = \"{}\"", r.function)));
    }
}

#[test]
fn the_cargo_lambda_router_maps_every_route_and_nothing_else() {
    let manifest = read("Cargo.toml");
    let section = manifest
        .split("[workspace.metadata.lambda.watch.router]\n")
        .nth(1)
        .expect("a router section in Cargo.toml");
    let mut mapped = BTreeSet::new();
    for line in section.lines().take_while(|l| !l.trim().is_empty()) {
        let (path, rest) = line.split_once(" = ").expect("path = [...]");
        let path = path.trim_matches('"');
        for entry in rest.split("{ ").skip(1) {
            let method = entry.split("method = \"").nth(1).and_then(|s| s.split('"').next()).expect("method");
            let function =
                entry.split("function = \"").nth(1).and_then(|s| s.split('"').next()).expect("function");
            mapped.insert((path.to_string(), method.to_string(), function.to_string()));
        }
    }
    let expected: BTreeSet<_> =
        ROUTES.iter().map(|r| (r.path.to_string(), r.method.to_string(), r.function.to_string())).collect();
    assert_eq!(mapped, expected);
}

#[test]
fn the_sam_template_declares_every_function_with_its_route() {
    let resources = template_resources();
    let functions: BTreeSet<String> = resources
        .iter()
        .filter(|(_, body)| body.contains("Type: AWS::Serverless::Function"))
        .map(|(id, _)| id.clone())
        .collect();
    let mut expected: BTreeSet<String> = ROUTES.iter().map(|r| camel(r.function)).collect();
    expected.extend(OTHER_FUNCTIONS.iter().map(|f| camel(f)));
    assert_eq!(functions, expected);
    for f in OTHER_FUNCTIONS {
        let (_, body) = resources.iter().find(|(id, _)| *id == camel(f)).expect("resource");
        assert!(body.contains(&format!("CodeUri: ../target/lambda/{f}/bootstrap.zip")), "{f}");
        assert!(body.contains(&format!("KICKOFF_FUNCTION: {f}\n")), "{f} runs its own code");
    }
    for r in ROUTES {
        let (_, body) = resources.iter().find(|(id, _)| *id == camel(r.function)).expect("resource");
        assert!(
            body.contains(&format!("CodeUri: ../target/lambda/{}/bootstrap.zip", r.function)),
            "{}",
            r.function
        );
        assert!(
            body.contains(&format!("KICKOFF_FUNCTION: {}\n", r.function)),
            "{} runs its own code",
            r.function
        );
        assert!(body.contains(&format!("Method: {}\n", r.method)), "{} method", r.function);
        assert!(body.contains(&format!("Path: {}\n", r.path)), "{} path", r.function);
    }
}

#[test]
fn the_sam_template_table_matches_the_table_definition() {
    let resources = template_resources();
    let (_, table_def) = resources.iter().find(|(id, _)| id == "Table").expect("a Table resource");
    for key in [
        table::PARTITION_KEY,
        table::SORT_KEY,
        table::INDEX_PARTITION_KEY,
        table::INDEX_SORT_KEY,
        table::WAKE_PARTITION_KEY,
        table::WAKE_SORT_KEY,
    ] {
        assert!(table_def.contains(&format!("AttributeName: {key}\n")), "attribute {key}");
    }
    let compact: String = table_def.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    assert!(compact.contains(&format!(
        "KeySchema:\n- AttributeName: {}\nKeyType: HASH\n- AttributeName: {}\nKeyType: RANGE",
        table::PARTITION_KEY,
        table::SORT_KEY
    )));
    assert!(compact.contains(&format!(
        "IndexName: {}\nKeySchema:\n- AttributeName: {}\nKeyType: HASH\n- AttributeName: {}\nKeyType: RANGE\nProjection:\nProjectionType: ALL",
        table::INDEX_NAME,
        table::INDEX_PARTITION_KEY,
        table::INDEX_SORT_KEY
    )));
    assert!(compact.contains(&format!(
        "IndexName: {}\nKeySchema:\n- AttributeName: {}\nKeyType: HASH\n- AttributeName: {}\nKeyType: RANGE\nProjection:\nProjectionType: KEYS_ONLY",
        table::WAKE_INDEX_NAME,
        table::WAKE_PARTITION_KEY,
        table::WAKE_SORT_KEY
    )));
    assert!(compact.contains(&format!(
        "TimeToLiveSpecification:\nAttributeName: {}\nEnabled: true",
        table::TTL_ATTRIBUTE
    )));
    assert!(compact.contains("PointInTimeRecoveryEnabled: true"));
}

#[test]
fn the_worker_is_fed_by_the_run_queue_and_reports_partial_failures() {
    let resources = template_resources();
    let (_, worker) = resources.iter().find(|(id, _)| id == "Worker").expect("a Worker resource");
    let compact: String = worker.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    assert!(compact.contains("Type: SQS\nProperties:\nQueue: !GetAtt RunQueue.Arn"), "{compact}");
    assert!(compact.contains("FunctionResponseTypes:\n- ReportBatchItemFailures"));
    let (_, queue) = resources.iter().find(|(id, _)| id == "RunQueue").expect("RunQueue");
    assert!(queue.contains("deadLetterTargetArn: !GetAtt RunDeadLetterQueue.Arn"));
}

/// EventBridge invokes the scheduler every minute; its role may query the wake index and read a run,
/// move a run's wake time and send to the run queue, and nothing else.
#[test]
fn the_scheduler_ticks_every_minute_with_a_role_of_its_own() {
    let resources = template_resources();
    let (_, scheduler) = resources.iter().find(|(id, _)| id == "Scheduler").expect("a Scheduler resource");
    let compact: String = scheduler.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    assert!(compact.contains("Type: Schedule\nProperties:\nSchedule: rate(1 minute)"), "{compact}");
    let mut actions: Vec<&str> = compact
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter(|l| l.starts_with("dynamodb:") || l.starts_with("sqs:") || l.starts_with("lambda:"))
        .collect();
    actions.sort_unstable();
    actions.dedup();
    // (infra/iam/check.py holds every function's grants to what it used on the enforcing local stack)
    assert_eq!(
        actions,
        ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem", "sqs:SendMessage"],
        "{compact}"
    );
    assert!(compact.contains(&format!("- !Sub \"${{Table.Arn}}/index/{}\"", table::WAKE_INDEX_NAME)));
}

/// The lines of `template`'s `Policies:` blocks (each line indented deeper than its `Policies:` key)
/// that hold a wildcard.
fn policy_wildcards(template: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut policies_indent: Option<usize> = None;
    for line in template.lines() {
        let text = line.split(" #").next().unwrap_or("").trim_end();
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        let indent = text.len() - text.trim_start().len();
        if policies_indent.is_some_and(|p| indent <= p) {
            policies_indent = None;
        }
        if text.trim() == "Policies:" {
            policies_indent = Some(indent);
        } else if policies_indent.is_some() && text.contains('*') {
            found.push(text.trim().to_string());
        }
    }
    found
}

/// Least privilege: no role in the template names a wildcard action or resource, and no parameter a
/// role uses defaults to one.
#[test]
fn no_role_has_a_wildcard_action_or_resource() {
    let bad = "  Fn:\n    Properties:\n      Policies:\n        - Statement:\n            - Action:\n                - dynamodb:*\n              Resource: !GetAtt Table.Arn\n      Timeout: 3\n";
    assert_eq!(policy_wildcards(bad), ["- dynamodb:*"], "the check finds a wildcard");
    let template = read("infra/template.yaml");
    assert_eq!(policy_wildcards(&template), Vec::<String>::new());
    let (_, params) = template.split_once("\nParameters:\n").expect("parameters");
    let (params, _) = params.split_once("\nConditions:\n").expect("conditions after the parameters");
    assert!(!params.lines().any(|l| l.trim_start().starts_with("Default:") && l.contains('*')), "{params}");
    let policies = template.matches("Policies:").count();
    assert_eq!(policies, ROUTES.len() + OTHER_FUNCTIONS.len(), "one role per function");
}

/// Operations: the run queue's visibility timeout is at least six times the worker's time-out, and the
/// dead-letter queue and the worker's errors are alarmed.
#[test]
fn the_queue_outlasts_the_worker_and_failures_raise_alarms() {
    let resources = template_resources();
    let number = |body: &str, key: &str| -> u64 {
        body.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in {body}"))
    };
    let (_, worker) = resources.iter().find(|(id, _)| id == "Worker").expect("Worker");
    let (_, queue) = resources.iter().find(|(id, _)| id == "RunQueue").expect("RunQueue");
    assert!(number(queue, "VisibilityTimeout:") >= 6 * number(worker, "Timeout:"));
    assert_eq!(number(queue, "maxReceiveCount:"), 5);
    let (_, dlq_alarm) = resources.iter().find(|(id, _)| id == "DeadLetterAlarm").expect("DeadLetterAlarm");
    assert!(dlq_alarm.contains("Value: !GetAtt RunDeadLetterQueue.QueueName"), "{dlq_alarm}");
    let (_, errors) = resources.iter().find(|(id, _)| id == "WorkerErrorAlarm").expect("WorkerErrorAlarm");
    assert!(errors.contains("MetricName: Errors") && errors.contains("Value: !Ref Worker"), "{errors}");
    let (_, table) = resources.iter().find(|(id, _)| id == "Table").expect("Table");
    assert!(
        table.contains("PointInTimeRecoveryEnabled: true") && table.contains("BillingMode: PAY_PER_REQUEST")
    );
    assert!(read("infra/template.yaml").contains("\n  ApiUrl:\n"), "the API URL is an output");
}
