//! The AWS SDK configuration every client here is built from (DynamoDB, SQS, Lambda): the SDK's own
//! defaults, except that its HTTPS client sets up TLS on the first request instead of at start.
//!
//! The SDK's default client reads and parses every system root certificate (the bundle and each file
//! under `/etc/ssl/certs`) when a service client is built, which is most of a function's cold start
//! (SPEC §11: cold start within 2× of a bare `lambda_runtime` hello world). [`LazyTls`] hands out the
//! same connectors but skips that eager check, so the certificates are read once, by the first request
//! that needs a connection.
//!
//! On the local stack, `KICKOFF_IAM_IDENTITY=function` makes a function sign its calls with its own name
//! (`AWS_LAMBDA_FUNCTION_NAME`, which Lambda and `cargo lambda watch` set) as the access key id, so that
//! the local IAM enforcer (`infra/iam/enforcer.py`, `docs/iam.md`) holds it to its own role's policy in
//! `infra/template.yaml`. Lambda never sets the variable: there the role's credentials come as usual.

use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// The SDK's default HTTPS client without its start-up certificate loading.
#[derive(Debug)]
struct LazyTls(SharedHttpClient);

impl HttpClient for LazyTls {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    // `validate_base_client_config` is left at the trait's default (nothing): the SDK's client builds a
    // connector there, only to load the certificates early.

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The SDK configuration from the environment (region, credentials, endpoints), on [`LazyTls`] over the
/// SDK's HTTPS client (hyper, rustls with aws-lc, the system's root certificates). Given before loading,
/// so that the credential and region providers the loader builds use it too.
pub async fn config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .build_https();
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(SharedHttpClient::new(LazyTls(https)));
    match local_identity() {
        Some(name) => {
            loader
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    name,
                    "local",
                    None,
                    None,
                    "kickoff-local-iam",
                ))
                .load()
                .await
        }
        None => loader.load().await,
    }
}

/// The function's name as its access key id, when the local stack asks for it (`KICKOFF_IAM_IDENTITY`).
fn local_identity() -> Option<String> {
    if std::env::var("KICKOFF_IAM_IDENTITY").ok()? != "function" {
        return None;
    }
    std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok().filter(|n| !n.is_empty())
}
