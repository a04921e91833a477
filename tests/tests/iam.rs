//! The local IAM enforcer itself (`infra/iam/enforcer.py`, docs/iam.md): it answers as AWS answers —
//! an unknown key, a transaction item whose action the role lacks, an index the role may not query, a
//! queue or a function it may not use — and a function whose policy lost one action fails its call
//! through the real binary, while the same function with the template's policy succeeds.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use kickoff_tests::{deploy_with_template, request, stack, workspace_root, Enforcer, Stack};

/// A DynamoDB and an SQS client that sign as `identity` through `enforcer`.
async fn clients(
    stack: &Stack,
    enforcer: &Enforcer,
    identity: &str,
) -> (aws_sdk_dynamodb::Client, aws_sdk_sqs::Client) {
    let creds = aws_sdk_dynamodb::config::Credentials::new(identity, "local", None, None, "iam-test");
    let aws = stack.aws().await;
    let ddb = aws_sdk_dynamodb::config::Builder::from(&aws)
        .credentials_provider(creds.clone())
        .endpoint_url(&enforcer.dynamodb)
        .build();
    let sqs = aws_sdk_sqs::config::Builder::from(&aws)
        .credentials_provider(creds)
        .endpoint_url(&enforcer.sqs)
        .build();
    (aws_sdk_dynamodb::Client::from_conf(ddb), aws_sdk_sqs::Client::from_conf(sqs))
}

fn records_dir(test: &str) -> std::path::PathBuf {
    // Not the suite's record folder: these calls are meant to be denied.
    workspace_root().join("target").join("iam-selftest").join(test)
}

#[tokio::test]
async fn the_enforcer_answers_denied_calls_as_aws_does() {
    let Some(stack) = stack("the_enforcer_answers_denied_calls_as_aws_does") else {
        return;
    };
    let table = stack.new_table("iam-self").await;
    let queue = stack.new_queue("iam-self").await;
    let record = records_dir("answers").join("calls.jsonl");
    let _ = std::fs::remove_file(&record);
    let template = workspace_root().join("infra/template.yaml");
    let enforcer =
        Enforcer::start(&stack, table.table_name(), &queue, "http://127.0.0.1:9", &template, record);

    // An unknown key: UnrecognizedClientException, as AWS answers a key it does not know.
    let (ddb, _) = clients(&stack, &enforcer, "nobody").await;
    let err = ddb
        .get_item()
        .table_name(table.table_name())
        .key("PK", AttributeValue::S("x".into()))
        .key("SK", AttributeValue::S("x".into()))
        .send()
        .await
        .expect_err("unknown key");
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");

    // get-pipeline may GetItem on the table: allowed, and answered by DynamoDB Local.
    let (ddb, sqs) = clients(&stack, &enforcer, "get-pipeline").await;
    ddb.get_item()
        .table_name(table.table_name())
        .key("PK", AttributeValue::S("x".into()))
        .key("SK", AttributeValue::S("x".into()))
        .send()
        .await
        .expect("GetItem is granted");

    // A transaction is authorized per item: an Update needs dynamodb:UpdateItem, which get-pipeline lacks.
    let update = Update::builder()
        .table_name(table.table_name())
        .key("PK", AttributeValue::S("x".into()))
        .key("SK", AttributeValue::S("x".into()))
        .update_expression("SET a = :a")
        .expression_attribute_values(":a", AttributeValue::S("1".into()))
        .build()
        .expect("update");
    let err = ddb
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(update).build())
        .send()
        .await
        .expect_err("UpdateItem is not granted");
    assert_eq!(err.code(), Some("AccessDeniedException"), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains("is not authorized to perform: dynamodb:UpdateItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/"),
        "{err:?}"
    );
    let raw = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw, Some(400), "DynamoDB answers AccessDeniedException with 400");

    // Query on an index needs the index's ARN: list-pipelines has GSI1, not GSI2.
    let (ddb, _) = clients(&stack, &enforcer, "list-pipelines").await;
    let query = |index: &'static str| {
        ddb.query()
            .table_name(table.table_name())
            .index_name(index)
            .key_condition_expression(format!("{index}PK = :pk"))
            .expression_attribute_values(":pk", AttributeValue::S("x".into()))
            .send()
    };
    query("GSI1").await.expect("GSI1 is granted");
    let err = query("GSI2").await.expect_err("GSI2 is not granted");
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // SQS: get-pipeline may not send to the run queue; AWS answers 403 AccessDenied.
    let err =
        sqs.send_message().queue_url(&queue).message_body("{}").send().await.expect_err("no SendMessage");
    // (the SDK reads SQS's query-compatible code from the x-amzn-query-error header, as from AWS)
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");
    let raw = err.raw_response().expect("the answer");
    assert_eq!(raw.status().as_u16(), 403);
    assert_eq!(raw.headers().get("x-amzn-query-error"), Some("AccessDenied;Sender"));

    // A function that may send is refused a delay over SQS's 900 s, which the emulator would accept.
    let (_, sqs) = clients(&stack, &enforcer, "trigger-build-run").await;
    sqs.send_message().queue_url(&queue).message_body("{}").send().await.expect("SendMessage is granted");
    let err = sqs
        .send_message()
        .queue_url(&queue)
        .message_body("{}")
        .delay_seconds(901)
        .send()
        .await
        .expect_err("a delay over 900 s");
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    // And a message over SQS's 256 KiB, which moto would take.
    let err = sqs
        .send_message()
        .queue_url(&queue)
        .message_body("m".repeat(256 * 1024 + 1))
        .send()
        .await
        .expect_err("a message over 256 KiB");
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");

    // Lambda: only the listed block functions, by their ARN, qualified or not as invoked.
    for (who, path, status) in [
        ("worker", "echo-block", 502u16),
        ("worker", "other-function", 403),
        ("get-pipeline", "echo-block", 403),
    ] {
        let a = request(
            "POST",
            &format!("{}/2015-03-31/functions/{path}/invocations", enforcer.lambda),
            &[(
                "authorization",
                &format!("AWS4-HMAC-SHA256 Credential={who}/20261202/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0"),
            )],
            "{}",
        )
        .await;
        // 502: allowed and passed on to the (absent) upstream; 403: refused with Lambda's error shape.
        if status == 403 {
            assert_eq!(a.status, 403, "{who} -> {path}: {}", String::from_utf8_lossy(&a.raw));
            assert_eq!(
                a.headers.get("x-amzn-errortype").map(|v| v.to_str().unwrap_or_default()),
                Some("AccessDeniedException")
            );
        } else {
            assert_ne!(a.status, 403, "{who} -> {path} is granted: {}", String::from_utf8_lossy(&a.raw));
        }
    }

    let denied: Vec<_> =
        enforcer.decisions().into_iter().filter(|d| d.3 == "deny").map(|d| (d.0, d.1, d.2)).collect();
    assert!(
        denied.contains(&("get-pipeline".into(), "dynamodb:UpdateItem".into(), "${Table.Arn}".into())),
        "{denied:?}"
    );
    assert!(
        denied.contains(&(
            "list-pipelines".into(),
            "dynamodb:Query".into(),
            "${Table.Arn}/index/GSI2".into()
        )),
        "{denied:?}"
    );
}

/// `template` with `action` removed from the policy of the function resource `logical_id` (its lines up
/// to the next line indented by two spaces, the next resource).
fn without_action(template: &str, logical_id: &str, action: &str) -> String {
    let header = format!("  {logical_id}:");
    let drop = format!("                - {action}");
    let mut inside = false;
    let mut removed = 0;
    let mut out = String::new();
    for line in template.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") {
            inside = line == header;
        }
        if inside && line == drop {
            removed += 1;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert_eq!(removed, 1, "{logical_id} grants {action} once");
    out
}

#[tokio::test]
async fn a_function_whose_policy_lost_an_action_fails_where_aws_would() {
    let Some(stack) = stack("a_function_whose_policy_lost_an_action_fails_where_aws_would") else {
        return;
    };
    let full = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).expect("template");
    let cut = without_action(&full, "CreatePipeline", "dynamodb:PutItem");
    assert_eq!(full.matches("dynamodb:PutItem").count(), cut.matches("dynamodb:PutItem").count() + 1);
    let dir = records_dir("lost-action");
    std::fs::create_dir_all(&dir).expect("dir");
    let template = dir.join("template.yaml");
    std::fs::write(&template, cut).expect("write template");
    let d = deploy_with_template(&stack, "iam-cut", &template, dir.clone()).await;

    let auth = format!("Bearer {}", d.write_key);
    let body = r#"{"name": "iam-probe", "blocks": [{"name": "a", "executor": {"type": "noop"}}]}"#;
    let headers = [("content-type", "application/json"), ("authorization", auth.as_str())];
    let a = request("POST", &format!("{}/api/v1/pipelines", d.base), &headers, body).await;
    assert_eq!(a.status, 500, "the write is denied: {}", String::from_utf8_lossy(&a.raw));
    // Reads that the policy still grants go on working.
    let a = request("GET", &format!("{}/api/v1/pipelines?name=training", d.base), &headers, "").await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.raw));
    let denied: Vec<_> = d.enforcer.decisions().into_iter().filter(|x| x.3 == "deny").collect();
    assert!(
        denied.iter().any(|x| x.0 == "create-pipeline" && x.1 == "dynamodb:PutItem" && x.2 == "${Table.Arn}"),
        "{denied:?}"
    );
}
