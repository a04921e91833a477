//! CEL expressions of flow control and payload rules (SPEC §12), with their bounds: compiled when the
//! schedule is saved (a 422 naming the field), evaluated on each trigger over
//! `{event, variables, headers}`.
//!
//! Bounds: an expression is at most [`MAX_EXPR_BYTES`] bytes and holds at most one comprehension macro
//! (`all`, `exists`, `exists_one`, `map`, `filter`), so no expression nests loops: evaluation is linear
//! in the size of the trigger's body (at most 256 KiB) times the size of the expression. Expressions
//! run only in the trigger's request, before anything is written: one that fails on a payload fails
//! that request (a 422 naming it), never a run.
//!
//! The parser and the evaluator recurse once per level of nesting, with large frames in a debug build
//! (about 100 KiB a level): a tokio worker's 2 MiB stack overflows at 20 nested parentheses, and a stack
//! overflow aborts the process. So nesting is bounded ([`MAX_NESTING`]: brackets, and runs of unary
//! `!`/`-`), and all CEL work runs on a thread of its own with a [`CEL_STACK`] stack ([`on_cel_stack`]),
//! where a panic is a 422 too.

use std::sync::{Arc, OnceLock};

use cel::{Context, Env, Program};
use serde_json::{Map, Value};

use crate::{Error, Result};

/// The longest expression taken, in bytes.
pub const MAX_EXPR_BYTES: usize = 1_024;

/// The deepest nesting taken: brackets `(`, `[`, `{`, plus a run of unary `!` or `-`.
pub const MAX_NESTING: usize = 32;

/// The stack CEL runs on: 64 levels of nesting fit in a debug build; the bound is half that.
const CEL_STACK: usize = 64 << 20;

/// Runs `f` (CEL work) on a thread of its own with a [`CEL_STACK`] stack; a panic there is a 422.
pub fn on_cel_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("cel".into())
            .stack_size(CEL_STACK)
            .spawn_scoped(scope, f)
            .map_err(|e| Error::Internal(format!("no thread for CEL: {e}")))?;
        handle.join().map_err(|_| Error::Unprocessable("an expression failed on this payload".into()))?
    })
}

/// How deeply `src` nests (see [`MAX_NESTING`]); brackets inside string literals count too: the count
/// errs on the side of refusing.
fn nesting_of(src: &str) -> usize {
    let (mut brackets, mut unary, mut max) = (0usize, 0usize, 0usize);
    for c in src.chars() {
        match c {
            '(' | '[' | '{' => brackets += 1,
            ')' | ']' | '}' => brackets = brackets.saturating_sub(1),
            '!' | '-' => unary += 1,
            c if c.is_whitespace() => {}
            _ => unary = 0,
        }
        if !matches!(c, '!' | '-') && !c.is_whitespace() {
            unary = 0;
        }
        max = max.max(brackets + unary);
    }
    max
}

/// The comprehension macros, each a loop over a list or map.
const LOOPS: [&str; 5] = ["all", "exists", "exists_one", "map", "filter"];

/// CEL's standard library and its strings extension (`substring`, `split`, `lowerAscii`, `replace`,
/// …); not the lists extension, whose `lists.range(n)` would build a list of any length.
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        if let Err(e) = env.add_extension(cel::extensions::strings) {
            tracing::error!(error = ?e, "CEL strings extension not added");
        }
        Arc::new(env)
    })
    .clone()
}

/// How many comprehension macros `src` calls (`.name(`, spaces allowed between). A string literal that
/// looks like one counts too: the count errs on the side of refusing.
fn loops_in(src: &str) -> usize {
    let mut n = 0;
    for (i, _) in src.match_indices('.') {
        let rest = src[i + 1..].trim_start();
        let ident_len = rest.bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'_').count();
        let (ident, after) = rest.split_at(ident_len);
        if LOOPS.contains(&ident) && after.trim_start().starts_with('(') {
            n += 1;
        }
    }
    n
}

/// A compiled expression and the field it was given in (for errors).
pub struct Expr {
    field: String,
    program: Program,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr").field("field", &self.field).finish_non_exhaustive()
    }
}

/// Compiles `src`, given as `field`, within the bounds: a 422 naming the field otherwise.
pub fn compile(field: &str, src: &str) -> Result<Expr> {
    if src.trim().is_empty() {
        return Err(Error::Unprocessable(format!("{field}: an expression is required")));
    }
    if src.len() > MAX_EXPR_BYTES {
        return Err(Error::Unprocessable(format!("{field}: at most {MAX_EXPR_BYTES} bytes")));
    }
    if nesting_of(src) > MAX_NESTING {
        return Err(Error::Unprocessable(format!("{field}: nested at most {MAX_NESTING} levels deep")));
    }
    if loops_in(src) > 1 {
        return Err(Error::Unprocessable(format!(
            "{field}: at most one of all/exists/exists_one/map/filter per expression"
        )));
    }
    let program = env().compile(src).map_err(|e| {
        let first = e.errors.first().map(|e| e.to_string()).unwrap_or_default();
        Error::Unprocessable(format!("{field}: not a valid CEL expression: {first}"))
    })?;
    Ok(Expr { field: field.to_string(), program })
}

/// What an expression sees: the trigger's `event` (what becomes `event_variables`), its `variables`
/// and its request `headers` (lower-case names; credentials and signatures left out).
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub event: Value,
    pub variables: Value,
    pub headers: Map<String, Value>,
}

/// Headers an expression never sees: they carry credentials or signatures.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "authorization" | "cookie" | "x-api-key" | "proxy-authorization")
        || name.contains("signature")
        || name.contains("token")
        || name.contains("secret")
}

impl Input {
    /// The CEL context of this input.
    fn context(&self) -> Result<Context<'static, 'static>> {
        let mut ctx = Context::with_env(env());
        for (name, v) in [
            ("event", &self.event),
            ("variables", &self.variables),
            ("headers", &Value::Object(self.headers.clone())),
        ] {
            let v = cel::to_value(v).map_err(|e| Error::Internal(format!("cel value of {name}: {e}")))?;
            ctx.add_variable_from_value(name, v);
        }
        Ok(ctx)
    }
}

/// Evaluates compiled expressions over one input (the context is built once).
pub struct Evaluator {
    ctx: Context<'static, 'static>,
}

impl Evaluator {
    pub fn new(input: &Input) -> Result<Evaluator> {
        Ok(Evaluator { ctx: input.context()? })
    }

    /// The expression's value as JSON; a 422 naming the expression's field if it fails on this input.
    pub fn value(&self, e: &Expr) -> Result<Value> {
        let v = e.program.execute(&self.ctx).map_err(|err| {
            Error::Unprocessable(format!("{}: the expression failed on this payload: {err}", e.field))
        })?;
        v.json().map_err(|err| Error::Unprocessable(format!("{}: {err}", e.field)))
    }

    /// The expression as a condition: `true` only if it evaluates to `true`; an error (a missing key,
    /// say) or any other value is `false`.
    pub fn holds(&self, e: &Expr) -> bool {
        matches!(self.value(e), Ok(Value::Bool(true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(event: Value) -> Input {
        Input { event, variables: json!({"env": "prod"}), headers: Map::new() }
    }

    #[test]
    fn expressions_see_event_variables_and_headers() {
        let mut i = input(json!({"repository": {"full_name": "acme/etl"}, "ref": "refs/heads/main"}));
        i.headers.insert("x-github-event".into(), json!("push"));
        let ev = Evaluator::new(&i).unwrap();
        let key = compile("k", r#"event.repository.full_name + ":" + event.ref"#).unwrap();
        assert_eq!(ev.value(&key).unwrap(), json!("acme/etl:refs/heads/main"));
        let when = compile("w", r#"headers["x-github-event"] == "push" && variables.env == "prod""#).unwrap();
        assert!(ev.holds(&when));
        let missing = compile("w", "event.nope == 1").unwrap();
        assert!(!ev.holds(&missing), "a missing key is false, not an error");
        assert!(ev.value(&missing).unwrap_err().to_string().starts_with("w: the expression failed"));
        let one_loop = compile("w", r#"event.ref.startsWith("refs/heads/") && [1,2].exists(x, x == 2)"#);
        assert!(ev.holds(&one_loop.unwrap()));
    }

    #[test]
    fn bounds_are_a_422_naming_the_field() {
        for (src, says) in [
            ("", "an expression is required"),
            ("event.a +", "not a valid CEL expression"),
            ("[1].all(x, [2].exists(y, x == y))", "at most one of"),
            ("[1].map (x, x) . filter(y, true)", "at most one of"),
            (&format!("{}1{}", "(".repeat(33), ")".repeat(33)), "nested at most 32"),
            (&format!("{}1", "! -".repeat(17)), "nested at most 32"),
        ] {
            let e = compile("settings.rules[0].when", src).unwrap_err().to_string();
            assert!(e.starts_with("settings.rules[0].when: ") && e.contains(says), "{src}: {e}");
        }
        let long = format!("event.a == \"{}\"", "x".repeat(MAX_EXPR_BYTES));
        assert!(compile("f", &long).unwrap_err().to_string().contains("at most 1024 bytes"));
    }

    #[test]
    fn nesting_at_the_bound_runs_on_the_cel_stack() {
        let deep = format!("{}event.a{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        let i = input(json!({"a": 1}));
        let v = on_cel_stack(|| Evaluator::new(&i)?.value(&compile("f", &deep)?)).unwrap();
        let mut want = json!(1);
        for _ in 0..MAX_NESTING {
            want = json!([want]);
        }
        assert_eq!(v, want);
        let chain = vec!["event.a"; 100].join("+");
        assert_eq!(on_cel_stack(|| Evaluator::new(&i)?.value(&compile("f", &chain)?)).unwrap(), json!(100));
        let e = on_cel_stack(|| -> Result<()> { panic!("boom") }).unwrap_err();
        assert!(matches!(e, Error::Unprocessable(_)), "a panic on the CEL stack is a 422: {e:?}");
    }

    #[test]
    fn secret_headers_are_left_out() {
        for h in ["Authorization", "x-hub-signature-256", "X-Gitlab-Token", "stripe-signature", "x-api-key"] {
            assert!(is_secret_header(h), "{h}");
        }
        for h in ["x-github-event", "content-type", "x-gitlab-event"] {
            assert!(!is_secret_header(h), "{h}");
        }
    }
}
