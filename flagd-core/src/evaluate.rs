//! Evaluation: walks a compiled flag for a borrowed context. The common paths (disabled,
//! lists, variant rules, rollouts) do not allocate.

use std::io::Write as _;

use serde_json::{Map, Value};

use crate::context::EvaluationContext;
use crate::hash;
use crate::logic::Scope;
use crate::resolution::{ErrorCode, FlagValue, Reason, Resolution, Typed};
use crate::ruleset::{BucketBy, CompiledFlag, CompiledRollout, CompiledRule, CompiledServe, Ruleset, TOTAL_WEIGHT};

impl Ruleset {
    /// Evaluates one flag. An unknown key gives reason `ERROR` with `FLAG_NOT_FOUND` and
    /// the ruleset-wide metadata.
    pub fn evaluate<'r>(&'r self, key: &str, ctx: &EvaluationContext) -> Resolution<'r> {
        match self.position(key) {
            Some(position) => self.evaluate_at(position, ctx),
            None => Resolution::failed(ErrorCode::FlagNotFound, format!("flag `{key}` not found"), &self.metadata),
        }
    }

    /// Evaluates the flag at `position` (see [`Ruleset::position`]), for callers that
    /// already looked the key up; a position past the end gives `FLAG_NOT_FOUND`.
    pub fn evaluate_at<'r>(&'r self, position: usize, ctx: &EvaluationContext) -> Resolution<'r> {
        match self.flags.get(position) {
            Some(flag) => flag.evaluate(self, ctx),
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
        self.flags.iter().map(move |f| (f.key.as_str(), f.evaluate(self, ctx)))
    }
}

/// The outcome of trying one rule or serve.
enum Step<'r> {
    Served(Resolution<'r>),
    NoMatch,
}

impl CompiledFlag {
    fn evaluate<'r>(&'r self, rs: &'r Ruleset, ctx: &EvaluationContext) -> Resolution<'r> {
        if !self.enabled {
            return self.variant(self.off, Reason::Disabled);
        }
        if let Some(company) = ctx.company_id() {
            if !self.deny.is_empty() && self.deny.contains(company) {
                return self.variant(self.off, Reason::TargetingMatch);
            }
            if !self.allow.is_empty() && self.allow.contains(company) {
                return self.variant(self.on, Reason::TargetingMatch);
            }
        }
        for rule in &self.rules {
            match self.try_rule(rule, rs, ctx) {
                Ok(Step::Served(r)) => return r,
                Ok(Step::NoMatch) => {}
                Err(failure) => return failure,
            }
        }
        let Some(fallthrough) = &self.fallthrough else {
            return self.variant(None, Reason::Default);
        };
        let reason = if self.is_static { Reason::Static } else { Reason::Default };
        match self.serve(fallthrough, ctx, reason) {
            Step::Served(r) => r,
            Step::NoMatch => self.variant(None, Reason::Default),
        }
    }

    fn try_rule<'r>(
        &'r self,
        rule: &'r CompiledRule,
        rs: &'r Ruleset,
        ctx: &EvaluationContext,
    ) -> Result<Step<'r>, Resolution<'r>> {
        if !self.rule_matches(rule, rs, ctx)? {
            return Ok(Step::NoMatch);
        }
        Ok(self.serve(&rule.serve, ctx, Reason::TargetingMatch))
    }

    fn rule_matches<'r>(
        &'r self,
        rule: &CompiledRule,
        rs: &Ruleset,
        ctx: &EvaluationContext,
    ) -> Result<bool, Resolution<'r>> {
        if !rule.companies.is_empty() && !ctx.company_id().is_some_and(|c| rule.companies.contains(c)) {
            return Ok(false);
        }
        if !rule.segments.is_empty() && !rule.segments.iter().any(|&s| rs.in_segment(s, ctx)) {
            return Ok(false);
        }
        if !rule.conditions.iter().all(|c| c.holds(ctx)) {
            return Ok(false);
        }
        match &rule.logic {
            None => Ok(true),
            Some(logic) => logic.is_truthy(&self.scope(ctx)).map_err(|e| self.general(e.0.into_owned())),
        }
    }

    fn serve<'r>(&'r self, serve: &'r CompiledServe, ctx: &EvaluationContext, reason: Reason) -> Step<'r> {
        match serve {
            CompiledServe::Variant(i) => Step::Served(self.variant(Some(*i), reason)),
            CompiledServe::Rollout(r) => Step::Served(self.rollout(r, ctx)),
            CompiledServe::Targeting(logic) => match logic.variant_name(&self.scope(ctx)) {
                Ok(None) => Step::NoMatch,
                Ok(Some(name)) => Step::Served(self.named_variant(&name)),
                Err(e) => Step::Served(self.general(e.0.into_owned())),
            },
        }
    }

    fn rollout<'r>(&'r self, rollout: &CompiledRollout, ctx: &EvaluationContext) -> Resolution<'r> {
        let mut buf = [0u8; 24];
        let value = match &rollout.bucket_by {
            BucketBy::Company => ctx.company_id().or(ctx.targeting_key()),
            BucketBy::Attribute(name) => ctx.get(name).and_then(|v| bucket_text(v, &mut buf)),
        };
        let Some(value) = value else {
            let message =
                format!("flag `{}` rolls out by company: the context needs a companyId or targetingKey", self.key);
            return Resolution::failed(ErrorCode::TargetingKeyMissing, message, &self.metadata);
        };
        let bucket = hash::bucket(&self.key, value, TOTAL_WEIGHT);
        let picked = hash::pick(bucket, rollout.weights.iter().map(|&(_, w)| w));
        self.variant(picked.and_then(|i| rollout.weights.get(i)).map(|&(v, _)| v), Reason::Split)
    }

    fn named_variant<'r>(&'r self, name: &str) -> Resolution<'r> {
        match self.variants.iter().position(|(n, _)| n == name) {
            Some(i) => self.variant(Some(i), Reason::TargetingMatch),
            None => {
                self.general(format!("targeting of flag `{}` chose variant `{name}`, which does not exist", self.key))
            }
        }
    }

    fn variant(&self, index: Option<usize>, reason: Reason) -> Resolution<'_> {
        let entry = index.and_then(|i| Some((i, self.variants.get(i)?)));
        Resolution {
            value: entry.map(|(_, (_, v))| v),
            variant: entry.map(|(_, (n, _))| n.as_str()),
            variant_index: entry.map(|(i, _)| i),
            reason,
            error: None,
            metadata: &self.metadata,
        }
    }

    fn general(&self, message: String) -> Resolution<'_> {
        Resolution::failed(ErrorCode::General, message, &self.metadata)
    }

    fn scope<'a>(&'a self, ctx: &'a EvaluationContext) -> Scope<'a> {
        Scope { context: ctx, flag_key: &self.key }
    }
}

impl Ruleset {
    fn in_segment(&self, index: usize, ctx: &EvaluationContext) -> bool {
        let Some(segment) = self.segments.get(index) else { return false };
        let listed = ctx.company_id().is_some_and(|c| segment.companies.contains(c));
        listed || (!segment.conditions.is_empty() && segment.conditions.iter().all(|c| c.holds(ctx)))
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
