//! Evaluation: walks a compiled flag for a borrowed context. The common paths (disabled,
//! lists, variant rules, rollouts) do not allocate.

use std::io::Write as _;

use serde_json::{Map, Value};

use crate::context::EvaluationContext;
use crate::hash;
use crate::logic::Scope;
use crate::resolution::{ErrorCode, FlagValue, Outcome, Reason, Resolution, ResolutionError, Typed, flag_not_found};
use crate::ruleset::{BucketBy, CompiledFlag, CompiledRollout, CompiledRule, CompiledServe, Ruleset, TOTAL_WEIGHT};

impl Ruleset {
    /// Evaluates one flag. An unknown key gives reason `ERROR` with `FLAG_NOT_FOUND` and
    /// the ruleset-wide metadata.
    pub fn evaluate<'r>(&'r self, key: &str, ctx: &EvaluationContext) -> Resolution<'r> {
        match self.position(key) {
            Some(position) => self.evaluate_at(position, ctx),
            None => Resolution::failed(ErrorCode::FlagNotFound, flag_not_found(key), &self.metadata),
        }
    }

    /// Evaluates the flag at `position` (see [`Ruleset::position`]), for callers that
    /// already looked the key up; a position past the end gives `FLAG_NOT_FOUND`.
    pub fn evaluate_at<'r>(&'r self, position: usize, ctx: &EvaluationContext) -> Resolution<'r> {
        match self.flags.get(position) {
            Some(flag) => flag.evaluate(self, &Subject::new(ctx)),
            None => {
                Resolution::failed(ErrorCode::FlagNotFound, format!("no flag at position {position}"), &self.metadata)
            }
        }
    }

    /// Evaluates one flag and reads its value as `T` (`bool`, `&str`, `i64`, `f64`,
    /// `&Map`); a value of another type gives `TYPE_MISMATCH`.
    pub fn evaluate_as<'r, T: FlagValue<'r>>(&'r self, key: &str, ctx: &EvaluationContext) -> Typed<'r, T> {
        self.evaluate(key, ctx).typed(key)
    }

    /// A boolean flag's value.
    pub fn boolean<'r>(&'r self, key: &str, ctx: &EvaluationContext) -> Typed<'r, bool> {
        self.evaluate_as(key, ctx)
    }

    /// A string flag's value.
    pub fn string<'r>(&'r self, key: &str, ctx: &EvaluationContext) -> Typed<'r, &'r str> {
        self.evaluate_as(key, ctx)
    }

    /// A number flag's value as an integer (`TYPE_MISMATCH` if it has a fraction).
    pub fn integer<'r>(&'r self, key: &str, ctx: &EvaluationContext) -> Typed<'r, i64> {
        self.evaluate_as(key, ctx)
    }

    /// A number flag's value.
    pub fn float<'r>(&'r self, key: &str, ctx: &EvaluationContext) -> Typed<'r, f64> {
        self.evaluate_as(key, ctx)
    }

    /// An object flag's value.
    pub fn object<'r>(&'r self, key: &str, ctx: &EvaluationContext) -> Typed<'r, &'r Map<String, Value>> {
        self.evaluate_as(key, ctx)
    }

    /// Bulk evaluation: every flag, in definition order, for one context.
    pub fn evaluate_all<'r>(
        &'r self,
        ctx: &'r EvaluationContext,
    ) -> impl Iterator<Item = (&'r str, Resolution<'r>)> + 'r {
        let who = Subject::new(ctx);
        self.flags.iter().map(move |f| (f.key.as_str(), f.evaluate(self, &who)))
    }

    /// Every flag's [`Outcome`] for one context, in definition order: what
    /// [`Ruleset::evaluate_all`] resolves, without building the resolutions, for callers
    /// that only count results or look up answers kept per outcome.
    pub fn outcomes<'r>(&'r self, ctx: &'r EvaluationContext) -> impl Iterator<Item = Outcome> + 'r {
        let who = Subject::new(ctx);
        self.flags.iter().map(move |f| f.outcome(self, &who))
    }
}

/// A context as the flags read it, with the company id resolved once per evaluation
/// rather than once per flag and list.
struct Subject<'c> {
    ctx: &'c EvaluationContext,
    company: Option<&'c str>,
}

impl<'c> Subject<'c> {
    fn new(ctx: &'c EvaluationContext) -> Self {
        Self { ctx, company: ctx.company_id() }
    }
}

/// What a flag's evaluation chose, before it is dressed as a [`Resolution`]: the variant
/// (by index) and why, or the error. It is all [`Ruleset::outcomes`] needs, so that path
/// never builds a resolution.
type Choice = Result<(Option<usize>, Reason), ResolutionError>;

impl CompiledFlag {
    fn evaluate<'r>(&'r self, rs: &'r Ruleset, who: &Subject<'_>) -> Resolution<'r> {
        match self.choose(rs, who) {
            Ok((index, reason)) => self.variant(index, reason),
            Err(ResolutionError { code, message }) => Resolution::failed(code, message, &self.metadata),
        }
    }

    fn outcome(&self, rs: &Ruleset, who: &Subject<'_>) -> Outcome {
        match self.choose(rs, who) {
            Ok((index, reason)) => Outcome { variant_index: self.served(index).map(|(i, _)| i), reason },
            Err(_) => Outcome { variant_index: None, reason: Reason::Error },
        }
    }

    fn choose(&self, rs: &Ruleset, who: &Subject<'_>) -> Choice {
        if !self.enabled {
            return Ok((self.off, Reason::Disabled));
        }
        if let Some(company) = who.company {
            if !self.deny.is_empty() && self.deny.contains(company) {
                return Ok((self.off, Reason::TargetingMatch));
            }
            if !self.allow.is_empty() && self.allow.contains(company) {
                return Ok((self.on, Reason::TargetingMatch));
            }
        }
        for rule in &self.rules {
            if let Some(choice) = self.try_rule(rule, rs, who) {
                return choice;
            }
        }
        let reason = if self.is_static { Reason::Static } else { Reason::Default };
        let served = self.fallthrough.as_ref().and_then(|fallthrough| self.serve(fallthrough, who, reason));
        served.unwrap_or(Ok((None, Reason::Default)))
    }

    /// The rule's choice, or `None` when it does not match.
    fn try_rule(&self, rule: &CompiledRule, rs: &Ruleset, who: &Subject<'_>) -> Option<Choice> {
        match self.rule_matches(rule, rs, who) {
            Ok(true) => self.serve(&rule.serve, who, Reason::TargetingMatch),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn rule_matches(&self, rule: &CompiledRule, rs: &Ruleset, who: &Subject<'_>) -> Result<bool, ResolutionError> {
        if !rule.companies.is_empty() && !who.company.is_some_and(|c| rule.companies.contains(c)) {
            return Ok(false);
        }
        if !rule.segments.is_empty() && !rule.segments.iter().any(|&s| rs.in_segment(s, who)) {
            return Ok(false);
        }
        if !rule.conditions.iter().all(|c| c.holds(who.ctx)) {
            return Ok(false);
        }
        match &rule.logic {
            None => Ok(true),
            Some(logic) => logic.is_truthy(&self.scope(who)).map_err(|e| general(e.0.into_owned())),
        }
    }

    /// What `serve` picks, or `None` when it is targeting logic that picks nothing.
    fn serve(&self, serve: &CompiledServe, who: &Subject<'_>, reason: Reason) -> Option<Choice> {
        match serve {
            CompiledServe::Variant(i) => Some(Ok((Some(*i), reason))),
            CompiledServe::Rollout(r) => Some(self.rollout(r, who)),
            CompiledServe::Targeting(logic) => match logic.variant_name(&self.scope(who)) {
                Ok(None) => None,
                Ok(Some(name)) => Some(self.named_variant(&name)),
                Err(e) => Some(Err(general(e.0.into_owned()))),
            },
        }
    }

    fn rollout(&self, rollout: &CompiledRollout, who: &Subject<'_>) -> Choice {
        let mut buf = [0u8; 24];
        let value = match &rollout.bucket_by {
            BucketBy::Company => who.company.or(who.ctx.targeting_key()),
            BucketBy::Attribute(name) => who.ctx.get(name).and_then(|v| bucket_text(v, &mut buf)),
        };
        let Some(value) = value else {
            let message = match &rollout.bucket_by {
                BucketBy::Company => {
                    format!("flag `{}` rolls out by company: the context needs a companyId or targetingKey", self.key)
                }
                BucketBy::Attribute(name) => {
                    format!("flag `{}` rolls out by `{name}`: the context needs it as a string or an integer", self.key)
                }
            };
            return Err(ResolutionError { code: ErrorCode::TargetingKeyMissing, message });
        };
        let bucket = hash::bucket_after(self.key_hash, value, TOTAL_WEIGHT);
        let picked = hash::pick(bucket, rollout.weights.iter().map(|&(_, w)| w));
        Ok((picked.and_then(|i| rollout.weights.get(i)).map(|&(v, _)| v), Reason::Split))
    }

    fn named_variant(&self, name: &str) -> Choice {
        match self.variants.iter().position(|(n, _)| n == name) {
            Some(i) => Ok((Some(i), Reason::TargetingMatch)),
            None => {
                Err(general(format!("targeting of flag `{}` chose variant `{name}`, which does not exist", self.key)))
            }
        }
    }

    /// The variant at `index` with its index; `None` for an index without a variant, which
    /// serves nothing.
    fn served(&self, index: Option<usize>) -> Option<(usize, &(String, Value))> {
        index.and_then(|i| Some((i, self.variants.get(i)?)))
    }

    fn variant(&self, index: Option<usize>, reason: Reason) -> Resolution<'_> {
        let entry = self.served(index);
        Resolution {
            value: entry.map(|(_, (_, v))| v),
            variant: entry.map(|(_, (n, _))| n.as_str()),
            variant_index: entry.map(|(i, _)| i),
            reason,
            error: None,
            metadata: &self.metadata,
        }
    }

    fn scope<'a>(&'a self, who: &Subject<'a>) -> Scope<'a> {
        Scope::with_key_hash(who.ctx, &self.key, self.key_hash)
    }
}

fn general(message: String) -> ResolutionError {
    ResolutionError { code: ErrorCode::General, message }
}

impl Ruleset {
    fn in_segment(&self, index: usize, who: &Subject<'_>) -> bool {
        let Some(segment) = self.segments.get(index) else { return false };
        let listed = who.company.is_some_and(|c| segment.companies.contains(c));
        listed || (!segment.conditions.is_empty() && segment.conditions.iter().all(|c| c.holds(who.ctx)))
    }
}

/// The text a bucketing attribute hashes as: strings as they are, integers in decimal
/// (written into `buf`, so nothing is allocated).
fn bucket_text<'a>(value: &'a Value, buf: &'a mut [u8; 24]) -> Option<&'a str> {
    match value {
        Value::String(s) => Some(s),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            write!(cursor, "{n}").ok()?;
            let len = usize::try_from(cursor.position()).ok()?;
            std::str::from_utf8(buf.get(..len)?).ok()
        }
        _ => None,
    }
}
