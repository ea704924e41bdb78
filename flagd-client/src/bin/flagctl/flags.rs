//! Flag commands: list, get, create, the quick operations (enable, disable, rollout,
//! allow, deny), promote and eval.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::api::{Refusal, Request, Target, config_path, explain, problems, segment};
use crate::cli::{CompanyArgs, CreateArgs, DisableArgs, EnableArgs, EvalArgs, FlagType, PromoteArgs, RolloutArgs};
use crate::exit::Failure;
use crate::output::{self, Table};
use crate::session::Session;
use crate::wait;

/// `flagctl list`.
pub async fn list(session: &Session) -> Result<(), Failure> {
    let mut reply = session.api.send(Request::new(Method::GET, "/api/v1/flags", Target::default())).await?;
    let envs = match &session.env {
        Some(env) => vec![checked_env(session, env).await?],
        None if session.json() => Vec::new(),
        None => environment_names(session).await?,
    };
    if session.json() {
        if let Some(env) = &session.env {
            only_environment(&mut reply.body, env);
        }
        output::json(&reply.body);
        return Ok(());
    }
    let flags = reply.body["flags"].as_array().cloned().unwrap_or_default();
    let mut headers = vec!["KEY"];
    headers.extend(envs.iter().map(String::as_str));
    headers.push("DESCRIPTION");
    let mut table = Table::new(&headers);
    for flag in &flags {
        let mut row = vec![output::cell(&flag["key"])];
        row.extend(envs.iter().map(|env| output::cell(&flag["environments"][env]["state"])));
        row.push(output::cell(&flag["description"]));
        table.row(row);
    }
    table.print("no flags yet; create one with `flagctl create KEY`");
    Ok(())
}

/// Keeps only `env` in each flag's `environments` of a flag list, as the table shows only
/// its column.
fn only_environment(list: &mut Value, env: &str) {
    for flag in list["flags"].as_array_mut().into_iter().flatten() {
        if let Some(envs) = flag["environments"].as_object_mut() {
            envs.retain(|name, _| name == env);
        }
    }
}

/// Every environment's name, in the server's order.
pub async fn environment_names(session: &Session) -> Result<Vec<String>, Failure> {
    let reply = session.api.send(Request::new(Method::GET, "/api/v1/environments", Target::default())).await?;
    let list = reply.body["environments"].as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(list.iter().filter_map(|e| e["name"].as_str().map(str::to_owned)).collect())
}

/// `env` if the server has it, otherwise a not-found failure.
pub async fn checked_env(session: &Session, env: &str) -> Result<String, Failure> {
    if environment_names(session).await?.iter().any(|e| e == env) {
        return Ok(env.to_owned());
    }
    Err(Failure::NotFound(format!("environment `{env}` not found; list environments with `flagctl environments`")))
}

/// `flagctl environments`.
pub async fn environments(session: &Session) -> Result<(), Failure> {
    session.refuse_env("environments", "it lists every environment")?;
    let reply = session.api.send(Request::new(Method::GET, "/api/v1/environments", Target::default())).await?;
    if session.json() {
        output::json(&reply.body);
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "CREATED"]);
    for env in reply.body["environments"].as_array().map(Vec::as_slice).unwrap_or_default() {
        table.row(vec![output::cell(&env["name"]), output::time_cell(&env["createdAt"])]);
    }
    table.print("no environments");
    Ok(())
}

/// `flagctl get KEY`: the definition and each environment's state, or with `--env` that
/// environment's whole configuration.
pub async fn get(session: &Session, key: &str) -> Result<(), Failure> {
    let path = match &session.env {
        Some(env) => config_path(key, env),
        None => format!("/api/v1/flags/{}", segment(key)),
    };
    let target = Target::flag(key, session.env.as_deref());
    let reply = session.api.send(Request::new(Method::GET, path, target)).await?;
    if session.json() {
        output::json(&reply.body);
    } else if session.env.is_some() {
        describe_config(&reply.body);
    } else {
        describe_flag(&reply.body);
    }
    Ok(())
}

fn describe_flag(flag: &Value) {
    let variants = flag["variants"].as_object().map_or_else(String::new, |v| {
        v.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(", ")
    });
    output::fields(&[
        ("key", output::cell(&flag["key"])),
        ("description", output::cell(&flag["description"])),
        ("owner", output::cell(&flag["owner"])),
        ("tags", output::list_cell(&flag["tags"])),
        ("variants", if variants.is_empty() { "on=true, off=false".to_owned() } else { variants }),
        ("on variant", output::cell(&flag["onVariant"])),
        ("off variant", output::cell(&flag["offVariant"])),
        ("version", output::cell(&flag["version"])),
    ]);
    output::line("");
    let mut table = Table::new(&["ENVIRONMENT", "STATE", "VERSION", "UPDATED BY", "UPDATED"]);
    for (env, summary) in flag["environments"].as_object().into_iter().flatten() {
        table.row(vec![
            env.clone(),
            output::cell(&summary["state"]),
            output::cell(&summary["version"]),
            output::cell(&summary["updatedBy"]),
            output::time_cell(&summary["updatedAt"]),
        ]);
    }
    table.print("in no environment");
}

/// A configuration (`ConfigView`) for people, whole: each rule on its own line, in order.
pub fn describe_config(config: &Value) {
    let rules = config["rules"].as_array().map(Vec::as_slice).unwrap_or_default();
    // Under the values' column, which starts after the longest field name and two spaces.
    let indent = format!("\n{}", " ".repeat("environment".len() + 2));
    let rules_text = if rules.is_empty() {
        "none".to_owned()
    } else {
        rules
            .iter()
            .enumerate()
            .map(|(i, rule)| format!("{}. {}", i + 1, rule_text(rule)))
            .collect::<Vec<_>>()
            .join(&indent)
    };
    output::fields(&[
        ("flag", output::cell(&config["flag"])),
        ("environment", output::cell(&config["environment"])),
        ("state", output::cell(&config["state"])),
        ("allow", output::list_cell(&config["allow"])),
        ("deny", output::list_cell(&config["deny"])),
        ("rules", rules_text),
        ("fallthrough", serve_text(&config["fallthrough"])),
        (
            "version",
            format!(
                "{} (by {} at {})",
                output::cell(&config["version"]),
                output::cell(&config["updatedBy"]),
                output::time_cell(&config["updatedAt"])
            ),
        ),
    ]);
}

/// A rule in words: its name, what a context must be, and what it then gets:
/// `pilots: in segment pilot or staff → variant on`.
fn rule_text(rule: &Value) -> String {
    let mut clauses = Vec::new();
    if rule["companies"].as_array().is_some_and(|c| !c.is_empty()) {
        clauses.push(format!("company in {}", output::list_cell(&rule["companies"])));
    }
    if let Some(segments) = rule["segments"].as_array().filter(|s| !s.is_empty()) {
        let names: Vec<String> = segments.iter().map(output::cell).collect();
        clauses.push(format!("in segment {}", names.join(" or ")));
    }
    for condition in rule["conditions"].as_array().into_iter().flatten() {
        let value = match &condition["value"] {
            list @ Value::Array(_) => output::list_cell(list),
            other => output::cell(other),
        };
        clauses.push(format!("{} {} {value}", output::cell(&condition["attribute"]), output::cell(&condition["op"])));
    }
    if !rule["logic"].is_null() {
        clauses.push(format!("logic {}", rule["logic"]));
    }
    let when = if clauses.is_empty() { "every context".to_owned() } else { clauses.join(" and ") };
    let name = rule["name"].as_str().map(|n| format!("{n}: ")).unwrap_or_default();
    format!("{name}{when} → {}", serve_text(&rule["serve"]))
}

/// What a `Serve` serves, in words: `variant on`, `rollout on 25% / off 75%`.
pub fn serve_text(serve: &Value) -> String {
    if let Some(variant) = serve["variant"].as_str() {
        return format!("variant {variant}");
    }
    if let Some(variants) = serve["rollout"]["variants"].as_array() {
        let weights: Vec<String> = variants
            .iter()
            .map(|v| format!("{} {}%", output::cell(&v["variant"]), output::number(&v["weight"])))
            .collect();
        let by = serve["rollout"]["bucketBy"].as_str().unwrap_or("companyId");
        return format!("rollout {} (by {by})", weights.join(" / "));
    }
    if serve.get("targeting").is_some() {
        return "flagd targeting expression".to_owned();
    }
    "the off variant (no fallthrough set)".to_owned()
}

/// `flagctl create KEY …`.
pub async fn create(session: &Session, args: &CreateArgs) -> Result<(), Failure> {
    // --env is global: refuse it rather than let `create X --env production` look as if it
    // did something to production.
    if let Some(env) = &session.env {
        return Err(Failure::Usage(format!(
            "`flagctl create` takes no --env: a new flag starts DISABLED in every environment; drop --env {env}, \
             then turn it on with `flagctl enable {} --env {env}`; nothing was changed",
            args.key
        )));
    }
    let variants = variants(args)?;
    let mut body = Map::new();
    body.insert("key".into(), json!(args.key));
    let optional = [
        ("description", &args.description),
        ("owner", &args.owner),
        ("offVariant", &args.off_variant),
        ("onVariant", &args.on_variant),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            body.insert(name.into(), json!(value));
        }
    }
    if !args.tags.is_empty() {
        body.insert("tags".into(), json!(args.tags));
    }
    if !variants.is_empty() {
        body.insert("variants".into(), Value::Object(variants));
    }
    let request = Request::new(Method::POST, "/api/v1/flags", Target::flag(&args.key, None)).json(Value::Object(body));
    let reply = session.api.send(request).await?;
    if session.json() {
        output::json(&reply.body);
    } else {
        output::line(&format!(
            "created flag `{0}`, DISABLED in every environment; turn it on with `flagctl enable {0} --env staging`",
            args.key
        ));
    }
    Ok(())
}

fn variants(args: &CreateArgs) -> Result<Map<String, Value>, Failure> {
    let pairs = split_pairs(&args.variants, "--variant", "NAME=VALUE")?;
    let flag_type = args.flag_type.unwrap_or_else(|| infer_type(pairs.iter().map(|(_, raw)| *raw)));
    if pairs.is_empty() && flag_type != FlagType::Bool {
        return Err(Failure::Usage(format!(
            "a {flag_type:?} flag needs its variants: add --variant NAME=VALUE (at least two); nothing was changed"
        )));
    }
    pairs
        .into_iter()
        .map(|(name, raw)| {
            let repeated = (flag_type == FlagType::Object).then(|| flagd_core::find_repeated_key(raw.as_bytes()));
            if let Some(repeated) = repeated.flatten() {
                return Err(Failure::Usage(format!(
                    "variant `{name}`: {repeated}, so which of its values was meant is unknown; nothing was changed"
                )));
            }
            let value = typed_value(flag_type, raw).ok_or_else(|| {
                Failure::Usage(format!(
                    "variant `{name}`: `{raw}` is not a {flag_type:?} value; fix the value or --type; nothing was changed"
                ))
            })?;
            Ok((name.to_owned(), value))
        })
        .collect()
}

/// The type all raw values fit, most specific first; strings fit everything.
fn infer_type<'a>(raws: impl Iterator<Item = &'a str> + Clone) -> FlagType {
    [FlagType::Bool, FlagType::Number, FlagType::Object]
        .into_iter()
        .find(|t| raws.clone().all(|raw| typed_value(*t, raw).is_some()))
        .unwrap_or(FlagType::String)
}

fn typed_value(flag_type: FlagType, raw: &str) -> Option<Value> {
    let parsed = serde_json::from_str::<Value>(raw).ok();
    match flag_type {
        FlagType::String => Some(Value::String(raw.to_owned())),
        FlagType::Bool => parsed.filter(Value::is_boolean),
        FlagType::Number => parsed.filter(Value::is_number),
        FlagType::Object => parsed.filter(Value::is_object),
    }
}

/// Splits `NAME=VALUE`.
pub fn split_pair<'a>(text: &'a str, option: &str, shape: &str) -> Result<(&'a str, &'a str), Failure> {
    text.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| Failure::Usage(format!("{option} `{text}`: write it as {shape}; nothing was changed")))
}

/// Splits every `NAME=VALUE` of a repeated option, refusing a name given twice: which of
/// its values was meant is unknown, as for a key repeated in a file.
pub fn split_pairs<'a>(texts: &'a [String], option: &str, shape: &str) -> Result<Vec<(&'a str, &'a str)>, Failure> {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(texts.len());
    for text in texts {
        let (name, value) = split_pair(text, option, shape)?;
        if pairs.iter().any(|(seen, _)| *seen == name) {
            return Err(Failure::Usage(format!("{option} names `{name}` twice: give each once; nothing was changed")));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// A quick operation's request: `POST`/`PUT`/`DELETE …/{op}` with `body`.
fn quick<'a>(method: Method, key: &'a str, env: &'a str, op: &str, body: Value) -> Request<'a> {
    Request::new(method, format!("{}/{op}", config_path(key, env)), Target::flag(key, Some(env))).json(body)
}

/// Sends a write whose answer is a configuration; returns it.
pub async fn send_change(session: &Session, request: Request<'_>) -> Result<Value, Failure> {
    Ok(session.api.send(request).await?.body)
}

/// Prints a changed configuration (JSON, or `done` and the configuration; the server says
/// when the write changed nothing), then waits if asked.
async fn show_change(session: &Session, done: &str, config: &Value, wait: bool) -> Result<(), Failure> {
    // Every write flagd-server answers carries its version: without one, something else
    // answered (a `{}` from another API), and nothing says the change was made.
    let Some(seq) = config["version"].as_i64() else {
        return Err(Failure::NotFlagd(format!(
            "{} answered without the `version` every flagd-server write answer has; check that FLAGD_URL (or --url) \
             names flagd-server, then look whether the change was made (`flagctl get`, `flagctl audit`)",
            session.api.base()
        )));
    };
    if session.json() {
        output::json(config);
    } else {
        let version = output::cell(&config["version"]);
        if config["unchanged"] == true {
            output::line(&format!("{done}: it already was, nothing changed (seq {version})"));
        } else {
            output::line(&format!("{done} (seq {version})"));
        }
        describe_config(config);
    }
    if wait {
        wait::report(session, seq).await?;
    }
    Ok(())
}

/// `{"reason": …}` or `{}`.
fn reason_body(reason: Option<&str>) -> Value {
    reason.map_or_else(|| json!({}), |r| json!({ "reason": r }))
}

/// The enable request (also used by `ramp`).
pub fn enable_request<'a>(key: &'a str, env: &'a str, reason: Option<&str>) -> Request<'a> {
    quick(Method::POST, key, env, "enable", reason_body(reason))
}

/// The disable request (also used by `ramp`).
pub fn disable_request<'a>(key: &'a str, env: &'a str, reason: &str) -> Request<'a> {
    quick(Method::POST, key, env, "disable", reason_body(Some(reason)))
}

/// The rollout request for a percentage (also used by `ramp`).
pub fn percentage_request<'a>(key: &'a str, env: &'a str, percentage: f64, reason: Option<&str>) -> Request<'a> {
    let mut body = json!({ "percentage": percentage });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    quick(Method::PUT, key, env, "rollout", body)
}

/// `flagctl enable KEY --env ENV`.
pub async fn enable(session: &Session, args: &EnableArgs) -> Result<(), Failure> {
    let env = session.write_env("enable")?;
    let config = send_change(session, enable_request(&args.key, env, args.change.reason.as_deref())).await?;
    show_change(session, &format!("enabled `{}` in {env}", args.key), &config, args.change.wait).await
}

/// `flagctl disable KEY --env ENV --reason TEXT`.
pub async fn disable(session: &Session, args: &DisableArgs) -> Result<(), Failure> {
    let env = session.write_env("disable")?;
    let config = send_change(session, disable_request(&args.key, env, &args.reason)).await?;
    show_change(session, &format!("disabled `{}` in {env}", args.key), &config, args.wait).await
}

/// A percentage as the API takes it: 0 to 100, at most three decimals, written in plain
/// decimals (clap value parser). The decimals are counted in the text, because a float
/// cannot tell `50.0000000000001` from `50` while the API would round one to the other.
pub fn percent(text: &str) -> Result<f64, String> {
    let refused = || format!("`{text}` must be a percentage from 0 to 100 with at most three decimals, e.g. 12.5");
    let number = text.trim();
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.len() + fraction.len() == 0 || !digits(whole) || !digits(fraction) {
        return Err(refused());
    }
    if fraction.trim_end_matches('0').len() > 3 {
        return Err(refused());
    }
    let value: f64 = number.parse().map_err(|_| refused())?;
    flagd_core::percent_milli(value).map(|_| value).map_err(|_| refused())
}

/// `flagctl rollout KEY PERCENT` or `--weight VARIANT=PERCENT …`.
pub async fn rollout(session: &Session, args: &RolloutArgs) -> Result<(), Failure> {
    let env = session.write_env("rollout")?;
    let mut body = match args.percentage {
        Some(p) => json!({ "percentage": p }),
        None => json!({ "variants": weights(&args.weights)? }),
    };
    if let Some(by) = &args.bucket_by {
        body["bucketBy"] = json!(by);
    }
    if let Some(reason) = &args.change.reason {
        body["reason"] = json!(reason);
    }
    let config = send_change(session, quick(Method::PUT, &args.key, env, "rollout", body)).await?;
    let (key, rollout) = (&args.key, serve_text(&config["fallthrough"]));
    let first = decided_before_fallthrough(&config);
    // The kill switch beats the rollout: "now serves" would tell someone who has yet to
    // enable the flag that companies get it. Lists and rules come before the fallthrough:
    // with a rule that matches every context, the share set here is served to nobody.
    let done = if config["state"] == "ENABLED" && !first.is_empty() {
        format!(
            "`{key}` in {env} now serves {rollout} to the contexts left by its {} (`flagctl get {key} --env {env}` \
             shows them)",
            first.join(" and ")
        )
    } else if config["state"] == "ENABLED" {
        format!("`{key}` in {env} now serves {rollout}")
    } else {
        format!(
            "`{key}` is DISABLED in {env}: it serves its off variant until enabled (`flagctl enable {key} --env \
             {env}`), then {rollout}"
        )
    };
    show_change(session, &done, &config, args.change.wait).await
}

/// What decides before a configuration's fallthrough: `["allow list", "2 rule(s)"]`.
fn decided_before_fallthrough(config: &Value) -> Vec<String> {
    let listed = |field: &str| config[field].as_array().is_some_and(|l| !l.is_empty());
    let rules = config["rules"].as_array().map_or(0, Vec::len);
    [("allow list", listed("allow")), ("deny list", listed("deny"))]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name.to_owned())
        .chain((rules > 0).then(|| format!("{rules} rule(s)")))
        .collect()
}

fn weights(raw: &[String]) -> Result<Vec<Value>, Failure> {
    split_pairs(raw, "--weight", "VARIANT=PERCENT")?
        .into_iter()
        .map(|(variant, weight)| {
            let weight = percent(weight)
                .map_err(|e| Failure::Usage(format!("--weight `{variant}={weight}`: {e}; nothing was changed")))?;
            Ok(json!({ "variant": variant, "weight": weight }))
        })
        .collect()
}

/// `flagctl allow|deny KEY COMPANY… [--remove]`.
pub async fn companies(session: &Session, list: &str, args: &CompanyArgs) -> Result<(), Failure> {
    let env = session.write_env(list)?;
    let mut body = json!({ "companies": args.companies });
    if let Some(reason) = &args.change.reason {
        body["reason"] = json!(reason);
    }
    let method = if args.remove { Method::DELETE } else { Method::POST };
    let config = send_change(session, quick(method, &args.key, env, list, body)).await?;
    let (verb, preposition) = if args.remove { ("removed", "from") } else { ("added", "to") };
    let named = distinct(&args.companies).join(", ");
    let done = format!("{verb} {named} {preposition} the {list} list of `{}` in {env}", args.key);
    show_change(session, &done, &config, args.change.wait).await
}

/// Each name once, in the order first given: `allow KEY 7 7` added one company.
fn distinct<S: AsRef<str>>(names: &[S]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    names.iter().map(AsRef::as_ref).filter(|name| seen.insert(*name)).collect()
}

/// `flagctl promote KEY --from A --to B`.
pub async fn promote(session: &Session, args: &PromoteArgs) -> Result<(), Failure> {
    if let Some(env) = session.env.as_deref().filter(|env| *env != args.to) {
        return Err(Failure::Usage(format!(
            "promote writes to --to {}, but --env says {env}; drop --env or make them agree; nothing was changed",
            args.to
        )));
    }
    let body = json!({
        "from": args.from, "to": args.to, "includeState": args.include_state, "reason": args.change.reason,
    });
    let path = format!("/api/v1/flags/{}/promote", segment(&args.key));
    let target = Target::flag(&args.key, None);
    let config = match session.api.exchange(Request::new(Method::POST, path, target).json(body)).await? {
        Ok(reply) => reply.body,
        Err(r) if r.code == "NOTHING_TO_PROMOTE" => return Err(nothing_to_promote(&r.message, args)),
        Err(r) => return Err(segments_to_create(&r, args).unwrap_or_else(|| explain(&r, &target))),
    };
    let done = format!("promoted `{}` from {} to {}", args.key, args.from, args.to);
    show_change(session, &done, &config, args.change.wait).await
}

/// The server refused to copy an untouched source over a configured target, saying why;
/// this names the flagctl ways to either set the source up or clear the target.
fn nothing_to_promote(message: &str, args: &PromoteArgs) -> Failure {
    let PromoteArgs { key, from, to, .. } = args;
    Failure::Conflict(format!(
        "{message}; nothing was changed. To promote, set `{key}` up in {from} first (`flagctl allow`, `rollout` \
         or `enable` with --env {from}), or name the right --from. To clear it in {to} instead: \
         `flagctl export --env {to} --format native > FILE`, delete the flag's `allow`, `deny`, `rules` and \
         `fallthrough` from FILE, then `flagctl import FILE --env {to}`"
    ))
}

/// Segments belong to one environment, so rules that use one can only be promoted to an
/// environment that has a segment of that name too. For a refusal naming segments the
/// target lacks (the server's problems say "unknown segment `pilot`"), this lists every
/// problem the server found and then how to make those segments; `None` for any other.
fn segments_to_create(r: &Refusal, args: &PromoteArgs) -> Option<Failure> {
    let PromoteArgs { key, from, to, .. } = args;
    let listed = r.body["error"]["problems"].as_array().map(Vec::as_slice).unwrap_or_default();
    let missing: Vec<&str> = listed
        .iter()
        .filter_map(|p| p["message"].as_str()?.strip_prefix("unknown segment `")?.strip_suffix('`'))
        .collect();
    let names = distinct(&missing);
    let first = names.first()?;
    Some(Failure::Usage(format!(
        "the server refused to promote `{key}` from {from} to {to} ({}){}; nothing was changed. Its rules use \
         segment(s) {} that {to} does not have: segments belong to one environment (each has its own companies), \
         so create each in {to} first (`flagctl segment get {first} --env {from}` shows it, `flagctl segment set \
         {first} --env {to} --company …` makes it), then promote again",
        r.message,
        problems(&r.body),
        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    )))
}

/// `flagctl eval KEY --company ID [--attr k=v …]`: in `--env`, or in every environment.
pub async fn eval(session: &Session, args: &EvalArgs) -> Result<(), Failure> {
    let context = eval_context(args)?;
    let envs = match &session.env {
        Some(env) => vec![env.clone()],
        None => environment_names(session).await?,
    };
    let mut results = Map::new();
    for env in &envs {
        let path = format!("{}/evaluate", config_path(&args.key, env));
        let request = Request::new(Method::POST, path, Target::flag(&args.key, Some(env)))
            .json(json!({ "context": context }))
            .read_only();
        results.insert(env.clone(), session.api.send(request).await?.body);
    }
    match (&session.env, session.json()) {
        (Some(env), true) => output::json(&results[env]),
        (None, true) => output::json(&Value::Object(results)),
        (Some(env), false) => describe_evaluation(&results[env]),
        (None, false) => {
            let mut table = Table::new(&["ENVIRONMENT", "VALUE", "VARIANT", "REASON", "ERROR"]);
            for (env, r) in &results {
                table.row(vec![
                    env.clone(),
                    output::cell(&r["value"]),
                    output::cell(&r["variant"]),
                    output::cell(&r["reason"]),
                    output::cell(&r["errorCode"]),
                ]);
            }
            table.print("no environments");
        }
    }
    Ok(())
}

fn describe_evaluation(result: &Value) {
    let mut pairs = vec![
        ("value", output::cell(&result["value"])),
        ("variant", output::cell(&result["variant"])),
        ("reason", output::cell(&result["reason"])),
    ];
    if result.get("errorCode").is_some() {
        pairs.push((
            "error",
            format!("{}: {}", output::cell(&result["errorCode"]), output::cell(&result["errorMessage"])),
        ));
    }
    output::fields(&pairs);
}

fn eval_context(args: &EvalArgs) -> Result<Value, Failure> {
    let mut context = Map::new();
    for (name, raw) in split_pairs(&args.attrs, "--attr", "NAME=VALUE")? {
        // The company and the targeting key have options of their own, which would win.
        if let Some(option) = [("companyId", "--company"), ("targetingKey", "--targeting-key")]
            .into_iter()
            .find_map(|(field, option)| (name == field).then_some(option))
        {
            return Err(Failure::Usage(format!("--attr {name}=…: give the {name} with {option} instead")));
        }
        context.insert(name.to_owned(), attribute_value(raw));
    }
    context.insert("companyId".into(), json!(args.company));
    if let Some(key) = &args.targeting_key {
        context.insert("targetingKey".into(), json!(key));
    }
    Ok(Value::Object(context))
}

/// An attribute as typed on the command line: JSON when it parses as a number, boolean,
/// list or object (`seats=10`, `beta=true`), a string otherwise (`plan=pro`).
pub fn attribute_value(raw: &str) -> Value {
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_))) => v,
        _ => Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_types_are_inferred_from_values() {
        let cases: [(&[&str], FlagType); 5] = [
            (&["true", "false"], FlagType::Bool),
            (&["1", "2.5"], FlagType::Number),
            (&["{\"a\":1}", "{}"], FlagType::Object),
            (&["red", "blue"], FlagType::String),
            (&["1", "blue"], FlagType::String),
        ];
        for (raws, expected) in cases {
            assert_eq!(infer_type(raws.iter().copied()), expected, "{raws:?}");
        }
    }

    #[test]
    fn percentages_take_three_decimals_at_most() {
        for (ok, value) in [
            ("0", 0.0),
            ("12.5", 12.5),
            ("0.001", 0.001),
            ("100", 100.0),
            ("100.000", 100.0),
            (" 7.", 7.0),
            (".5", 0.5),
        ] {
            assert_eq!(percent(ok), Ok(value), "{ok}");
        }
        for bad in ["-1", "100.5", "0.0001", "12.3456", "50.0000000000001", "NaN", "inf", "1e1", "", ".", "5,5", "+5"] {
            assert!(percent(bad).is_err(), "{bad}");
        }
    }
}
