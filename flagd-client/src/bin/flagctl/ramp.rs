//! `flagctl ramp`: a guarded gradual rollout.
//!
//! Each step sets the rollout percentage (a quick operation with an audit reason naming
//! the step), waits until the change is applied, waits `--every`, then runs the health
//! check. The first failing check disables the flag (the kill switch) and ends the ramp
//! with exit code 6. SIGINT/SIGTERM stop the ramp where it is: the flag keeps the last
//! percentage set, and flagctl says which (exit code 130).

use std::future::Future;
use std::os::fd::AsFd;
use std::process::Stdio;

use rustix::process::{Pid, kill_process_group};
use serde_json::{Value, json};

use flagd_core::{FlagDefinition, Serve};

use crate::api::{Request, Target, config_path, segment};
use crate::cli::RampArgs;
use crate::exit::Failure;
use crate::flags::{disable_request, enable_request, percentage_request, send_change, serve_text};
use crate::output;
use crate::session::Session;
use crate::signals::Signals;
use crate::{duration, wait};

/// `flagctl ramp --help`.
pub const LONG_ABOUT: &str = "\
A guarded gradual rollout: raise the percentage of companies that get the on variant
step by step, and switch the flag off as soon as a health check fails.

For each step: set the rollout percentage (audit reason `ramp step N/M: P%`), wait
until the change is applied, wait --every, then run --check with `sh -c`. The check
sees FLAGCTL_FLAG, FLAGCTL_ENV, FLAGCTL_RAMP_STEP, FLAGCTL_RAMP_STEPS,
FLAGCTL_RAMP_PERCENT and FLAGD_URL; its output goes to stderr. A non-zero exit
disables the flag (the kill switch, with a reason naming the step and the check) and
flagctl exits with 6.

A flag that is DISABLED at the start may have been switched off on purpose: ramp
refuses it (exit 3) unless --enable-if-disabled, which enables it right after the
first percentage is set (so it never serves more than the first step).

Steps only go up, from the percentage an enabled flag serves now: a ramp never takes
the feature away. A first step below it is refused (exit 3), and so is a flag whose
fallthrough is no percentage of its on variant (weights over other variants, a
targeting expression): set one with `flagctl rollout` first. A step equal to the
current percentage changes nothing (its check still runs). Every step keeps the
rollout's bucketing (`flagctl rollout --bucket-by`).

Progress goes to stderr with timestamps; with --output json, stdout gets one JSON
event per line (plan, step, enabled, waiting, check, disabled, summary). --dry-run prints the
plan and changes nothing. Ctrl-C or SIGTERM stops the ramp: the flag stays at the last
step set, a running check is killed with every process it started (it runs in a process
group of its own), flagctl says so and exits with 130.

Example:
  flagctl ramp checkout --env production --steps 1,5,25,50,100 --every 10m \\
      --check './smoke-test.sh && ./error-rate-below.sh 1%'";

/// How the ramp ended, for the summary event.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Completed,
    CheckFailed,
    Interrupted,
    Failed,
}

impl Ending {
    fn name(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::CheckFailed => "check-failed",
            Self::Interrupted => "interrupted",
            Self::Failed => "failed",
        }
    }
}

/// The process group of a running check, killed (SIGKILL) when dropped before the check
/// ended. Killing only `sh` (tokio's `kill_on_drop`) would leave what the check started,
/// e.g. the `sleep` of `sleep 300; ./probe`, running on after flagctl exits.
#[derive(Debug)]
struct CheckGroup {
    /// `None` once the check ended, or when its id is unknown.
    leader: Option<Pid>,
}

impl CheckGroup {
    fn of(child: &tokio::process::Child) -> Self {
        let leader = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
        Self { leader }
    }

    /// The check ended by itself: nothing to kill.
    fn finished(&mut self) {
        self.leader = None;
    }
}

impl Drop for CheckGroup {
    fn drop(&mut self) {
        if let Some(leader) = self.leader.take() {
            // ESRCH: the group is gone already. Nothing else can be done about a failure here.
            let _ = kill_process_group(leader, rustix::process::Signal::KILL);
        }
    }
}

/// One ramp in progress.
struct Ramp<'a> {
    session: &'a Session,
    args: &'a RampArgs,
    env: &'a str,
    /// The last step whose percentage the server confirmed: (step number, percentage).
    last_set: Option<(usize, f64)>,
}

/// Runs `ramp`.
pub async fn run(session: &Session, args: &RampArgs) -> Result<(), Failure> {
    let env = session.write_env("ramp")?;
    check_steps(&args.steps)?;
    let path = config_path(&args.key, env);
    let config =
        session.api.send(Request::new(reqwest::Method::GET, path, Target::flag(&args.key, Some(env)))).await?.body;
    let disabled = config["state"] != "ENABLED";
    if disabled && !args.enable_if_disabled {
        return Err(Failure::Conflict(format!(
            "`{0}` is DISABLED in {env}, perhaps switched off on purpose, and ramp does not turn flags on by \
             itself: pass --enable-if-disabled to enable it after the first step, or `flagctl enable {0} --env {env}` \
             first; nothing was changed",
            args.key
        )));
    }
    // Disabled, the flag serves its off variant to everyone: no step takes anything away.
    if !disabled {
        check_start(session, args, env, &config).await?;
    }
    let mut ramp = Ramp { session, args, env, last_set: None };
    ramp.plan(&config, disabled);
    if args.dry_run {
        ramp.event("dry-run", "dry run: nothing was changed", json!({}));
        return Ok(());
    }
    let mut signals = Signals::install()?;
    let result = ramp.steps(&mut signals, disabled).await;
    let ending = match &result {
        Ok(()) => Ending::Completed,
        Err(Failure::CheckFailed(_)) => Ending::CheckFailed,
        Err(Failure::Interrupted(_)) => Ending::Interrupted,
        Err(_) => Ending::Failed,
    };
    ramp.summary(ending, &result);
    result
}

/// Steps must be percentages that only go up: a ramp never takes a company's feature away.
fn check_steps(steps: &[f64]) -> Result<(), Failure> {
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Failure::Usage(format!(
            "--steps must go up, e.g. 1,5,25,50,100 (got {}); nothing was changed",
            steps.iter().map(f64::to_string).collect::<Vec<_>>().join(",")
        )));
    }
    Ok(())
}

/// Refuses steps that start below the percentage the flag serves now, and a fallthrough
/// that is no percentage of the on variant (explicit weights over other variants, a
/// targeting expression): the steps would replace it, and whether that takes the feature
/// from someone cannot be told. Steps equal to the current percentage change nothing.
async fn check_start(session: &Session, args: &RampArgs, env: &str, config: &Value) -> Result<(), Failure> {
    let key = &args.key;
    let path = format!("/api/v1/flags/{}", segment(key));
    let flag = session.api.send(Request::new(reqwest::Method::GET, path, Target::flag(key, Some(env)))).await?.body;
    let unreadable = |e: serde_json::Error| {
        Failure::Server(format!(
            "cannot read `{key}` as the server sent it ({e}); upgrade flagctl to the server's version; nothing was \
             changed"
        ))
    };
    let definition = definition(&flag).map_err(unreadable)?;
    let fallthrough: Option<Serve> = serde_json::from_value(config["fallthrough"].clone()).map_err(unreadable)?;
    let Some(current) = definition.on_percentage(fallthrough.as_ref()) else {
        return Err(Failure::Conflict(format!(
            "`{key}` in {env} serves {} where no rule matches, not a percentage of its on variant: ramp would \
             replace it and cannot tell whether that takes the feature from anyone; set the percentage to start \
             from with `flagctl rollout {key} PERCENT --env {env}`, then ramp; nothing was changed",
            serve_text(&config["fallthrough"])
        )));
    };
    match args.steps.first() {
        Some(&first) if first < current => Err(Failure::Conflict(format!(
            "`{key}` serves {current}% in {env} now and the first step, {first}%, is below it: it would take the \
             feature from companies that have it, and a ramp only goes up; start --steps at {current} or above, or \
             lower it on purpose with `flagctl rollout {key} {first} --env {env}`; nothing was changed"
        ))),
        _ => Ok(()),
    }
}

/// The parts of a flag (as `GET /api/v1/flags/{key}` shows it, with its environments)
/// that name its on and off variants.
fn definition(flag: &Value) -> Result<FlagDefinition, serde_json::Error> {
    let fields = ["key", "variants", "offVariant", "noOffVariant", "onVariant"];
    let parts = fields.iter().filter_map(|&field| Some((field.to_owned(), flag.get(field)?.clone())));
    serde_json::from_value(Value::Object(parts.collect()))
}

impl Ramp<'_> {
    fn total(&self) -> usize {
        self.args.steps.len()
    }

    /// A progress line on stderr, and with `--output json` an event on stdout.
    fn event(&self, kind: &str, text: &str, fields: Value) {
        let now = output::now_ms();
        output::note(&format!("[{}] {text}", output::timestamp(now)));
        if self.session.json() {
            let mut event =
                json!({ "event": kind, "at": output::timestamp(now), "flag": self.args.key, "environment": self.env });
            if let (Some(event), Value::Object(fields)) = (event.as_object_mut(), fields) {
                event.extend(fields);
            }
            output::line(&event.to_string());
        }
    }

    fn plan(&self, config: &Value, disabled: bool) {
        let a = self.args;
        let steps: Vec<String> = a.steps.iter().map(|p| format!("{p}%")).collect();
        let enable = if disabled { ", enabling it after step 1" } else { "" };
        let text = format!(
            "ramp `{}` in {}: now {} serving {}; steps {} every {}{enable}; check `{}`",
            a.key,
            self.env,
            output::cell(&config["state"]),
            serve_text(&config["fallthrough"]),
            steps.join(" → "),
            duration::show(a.every),
            a.check
        );
        let fields = json!({
            "state": config["state"], "steps": a.steps, "every": duration::show(a.every), "check": a.check,
            "enable": disabled, "dryRun": a.dry_run,
        });
        self.event("plan", &text, fields);
    }

    fn reason(&self, text: String) -> String {
        match &self.args.reason {
            Some(extra) => format!("{text} ({extra})"),
            None => text,
        }
    }

    async fn steps(&mut self, signals: &mut Signals, disabled: bool) -> Result<(), Failure> {
        let total = self.total();
        for (index, percentage) in self.args.steps.iter().copied().enumerate() {
            let step = index + 1;
            let reason = self.reason(format!("ramp step {step}/{total}: {percentage}%"));
            let request = percentage_request(&self.args.key, self.env, percentage, Some(&reason));
            let config = self.guarded(signals, step, send_change(self.session, request)).await??;
            self.last_set = Some((step, percentage));
            self.applied(signals, step, &config).await?;
            // A step at the percentage already served writes nothing (no audit event): say
            // so, as enable and disable do, rather than claim it was set.
            let unchanged = config["unchanged"] == true;
            let seq = output::cell(&config["version"]);
            let text = if unchanged {
                format!("step {step}/{total}: {percentage}% already served, nothing changed (seq {seq})")
            } else {
                format!("step {step}/{total}: {percentage}% set (seq {seq})")
            };
            self.event(
                "step",
                &text,
                json!({
                    "step": step, "steps": total, "percentage": percentage, "seq": config["version"],
                    "unchanged": unchanged,
                }),
            );
            if step == 1 && disabled {
                self.enable(signals, step).await?;
            }
            let every = self.args.every;
            if !every.is_zero() {
                self.event(
                    "waiting",
                    &format!("waiting {} before the check", duration::show(every)),
                    json!({ "step": step }),
                );
            }
            self.guarded(signals, step, tokio::time::sleep(every)).await?;
            let exit = self.guarded(signals, step, self.check(step, percentage)).await?;
            let ok = exit == Some(0);
            let shown = exit.map_or_else(|| "no exit code".to_owned(), |c| format!("exit code {c}"));
            self.event(
                "check",
                &format!("step {step}/{total}: check {} ({shown})", if ok { "passed" } else { "FAILED" }),
                json!({ "step": step, "ok": ok, "exitCode": exit }),
            );
            if !ok {
                return Err(self.kill_switch(step, percentage, &shown).await);
            }
        }
        Ok(())
    }

    /// `work`, or the interruption failure if a signal comes first.
    async fn guarded<T>(
        &self,
        signals: &mut Signals,
        step: usize,
        work: impl Future<Output = T>,
    ) -> Result<T, Failure> {
        signals.guard(work).await.map_err(|name| self.interrupted(name, step))
    }

    async fn applied(&self, signals: &mut Signals, step: usize, config: &Value) -> Result<(), Failure> {
        let Some(seq) = config["version"].as_i64() else { return Ok(()) };
        let sentence = self.guarded(signals, step, wait::applied(self.session, seq)).await?.map_err(|e| match e {
            Failure::WaitTimeout(m) => {
                Failure::WaitTimeout(format!("ramp stopped at step {step}/{}: {m}", self.total()))
            }
            other => other,
        })?;
        output::note(&format!("[{}] {sentence}", output::timestamp(output::now_ms())));
        Ok(())
    }

    async fn enable(&self, signals: &mut Signals, step: usize) -> Result<(), Failure> {
        let reason = self.reason(format!("ramp step {step}/{}: enabled by flagctl ramp (was DISABLED)", self.total()));
        let config = self
            .guarded(signals, step, send_change(self.session, enable_request(&self.args.key, self.env, Some(&reason))))
            .await??;
        self.applied(signals, step, &config).await?;
        self.event(
            "enabled",
            "the flag was DISABLED: enabled it (--enable-if-disabled)",
            json!({ "seq": config["version"] }),
        );
        Ok(())
    }

    /// Runs the check; its exit code (`None` when killed by a signal or not started).
    /// Dropped before the check ends (a signal), it kills the check and all it started.
    async fn check(&self, step: usize, percentage: f64) -> Option<i32> {
        // The check's stdout goes to our stderr: stdout carries JSON events.
        let stdout = std::io::stderr().as_fd().try_clone_to_owned().map_or_else(|_| Stdio::null(), Stdio::from);
        let spawned = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.args.check)
            .env("FLAGCTL_FLAG", &self.args.key)
            .env("FLAGCTL_ENV", self.env)
            .env("FLAGCTL_RAMP_STEP", step.to_string())
            .env("FLAGCTL_RAMP_STEPS", self.total().to_string())
            .env("FLAGCTL_RAMP_PERCENT", percentage.to_string())
            .env("FLAGD_URL", self.session.api.base())
            .stdin(Stdio::null())
            .stdout(stdout)
            // A group of its own, so that the processes `sh` starts can be killed with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                output::note(&format!("cannot run the check with `sh -c`: {e}"));
                return None;
            }
        };
        // Declared after `child`, so dropped before it: the group is killed while `sh` is
        // not yet reaped, and its id cannot have been reused by another group.
        let mut group = CheckGroup::of(&child);
        let status = child.wait().await;
        group.finished();
        match status {
            Ok(status) => status.code(),
            Err(e) => {
                output::note(&format!("cannot wait for the check: {e}"));
                None
            }
        }
    }

    /// Disables the flag after a failed check; the failure to end with.
    async fn kill_switch(&self, step: usize, percentage: f64, exit: &str) -> Failure {
        let (key, env, total, check) = (&self.args.key, self.env, self.total(), &self.args.check);
        let reason = format!(
            "ramp step {step}/{total} ({percentage}%): health check `{check}` failed ({exit}); kill switch by flagctl ramp"
        );
        match send_change(self.session, disable_request(key, env, &reason)).await {
            Ok(config) => {
                let seq = output::cell(&config["version"]);
                self.event(
                    "disabled",
                    &format!("kill switch: `{key}` DISABLED in {env} (seq {seq})"),
                    json!({ "seq": config["version"], "reason": reason }),
                );
                Failure::CheckFailed(format!(
                    "health check failed at step {step}/{total} ({percentage}%): `{check}` ({exit}); `{key}` is now DISABLED \
                     in {env} (seq {seq}); investigate, then ramp again or `flagctl enable {key} --env {env}`"
                ))
            }
            // Not exit 6: scripts read 6 as "the flag is off", and it is not.
            Err(e) => Failure::Server(format!(
                "health check failed at step {step}/{total} and the kill switch FAILED ({e}); `{key}` is still ON at \
                 {percentage}% in {env}: disable it now with `flagctl disable {key} --env {env} --reason '…'`"
            )),
        }
    }

    fn interrupted(&self, signal: &str, step: usize) -> Failure {
        let (key, env, total) = (&self.args.key, self.env, self.total());
        let left = match self.last_set {
            Some((set, percentage)) => {
                format!("`{key}` is left at {percentage}% in {env} (step {set}/{total}, the last step set)")
            }
            None => format!(
                "no step was confirmed; `{key}` in {env} is as it was (check with `flagctl get {key} --env {env}`)"
            ),
        };
        let in_flight = if self.last_set.map(|(set, _)| set) == Some(step) {
            String::new()
        } else {
            format!("; step {step}'s change may have reached the server: `flagctl get {key} --env {env}` shows it")
        };
        Failure::Interrupted(format!(
            "interrupted by {signal} at step {step}/{total}: {left}{in_flight}; resume with `flagctl ramp` and the \
             remaining --steps, or switch it off with `flagctl disable {key} --env {env} --reason …`"
        ))
    }

    fn summary(&self, ending: Ending, result: &Result<(), Failure>) {
        let text = match result {
            Ok(()) => format!(
                "ramp complete: `{}` serves {}% in {} after {}, every check passed",
                self.args.key,
                self.args.steps.last().copied().unwrap_or_default(),
                self.env,
                match self.total() {
                    1 => "1 step".to_owned(),
                    n => format!("{n} steps"),
                }
            ),
            Err(_) => format!("ramp stopped: {}", ending.name()),
        };
        let message = result.as_ref().err().map(Failure::to_string);
        let exit = result.as_ref().err().map_or(0, Failure::exit_code);
        let (step, percentage) = self.last_set.map_or((Value::Null, Value::Null), |(s, p)| (json!(s), json!(p)));
        self.event(
            "summary",
            &text,
            json!({ "result": ending.name(), "lastStep": step, "lastPercentage": percentage, "steps": self.total(), "exitCode": exit, "message": message }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_must_rise() {
        // Each step is a percentage from 0 to 100 already: `--steps` is read by `flags::percent`.
        assert!(check_steps(&[1.0, 5.0, 25.0, 50.0, 100.0]).is_ok());
        assert!(check_steps(&[0.5, 12.5]).is_ok());
        for bad in [&[5.0, 1.0][..], &[5.0, 5.0], &[50.0, 12.5, 100.0]] {
            assert!(check_steps(bad).is_err(), "{bad:?}");
        }
    }
}
