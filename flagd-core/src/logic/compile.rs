//! Turns a JSON Logic expression into a [`Node`] tree, the way json-logic-engine's
//! `build` does: unknown operators fail, deterministic sub-expressions (no `var`,
//! `missing*` or flagd operator outside an iterator body) are evaluated once here, and
//! whatever would throw while building fails compilation.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::eval::{Env, eval};
use super::node::{Args, ArithOp, CmpOp, Func, IterKind, Node};
use super::value::Val;
use super::{CompileEnv, Limits};
use crate::context::EvaluationContext;
use crate::error::LogicError;
use crate::hash::Murmur3;
use crate::problems::Path;

const INVALID_ARGUMENTS: &str = "Invalid Arguments";

/// Every operator we compile, by name.
pub const OPERATORS: &[&str] = &[
    "var",
    "if",
    "?:",
    "==",
    "===",
    "!=",
    "!==",
    "!",
    "!!",
    "not",
    "and",
    "or",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "cat",
    "substr",
    "+",
    "-",
    "*",
    "/",
    "%",
    "min",
    "max",
    "merge",
    "map",
    "filter",
    "reduce",
    "all",
    "every",
    "some",
    "none",
    "missing",
    "missing_some",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
];

/// flagd's operators: never deterministic, so never folded.
const FLAGD_OPERATORS: &[&str] = &["fractional", "sem_ver", "starts_with", "ends_with"];

/// Resolves `$ref`s and checks operators and limits, returning the expression to compile.
pub(crate) fn resolve(expr: &Value, env: &CompileEnv<'_>) -> Result<Value, LogicError> {
    let mut r = Resolver { env, nodes: 0, stack: Vec::new() };
    r.walk(expr, Path::Root(""), 1)
}

struct Resolver<'e> {
    env: &'e CompileEnv<'e>,
    nodes: usize,
    stack: Vec<String>,
}

impl Resolver<'_> {
    fn walk(&mut self, v: &Value, path: Path<'_>, depth: usize) -> Result<Value, LogicError> {
        let Limits { max_depth, max_nodes } = self.env.limits;
        self.nodes += 1;
        if self.nodes > max_nodes {
            return Err(LogicError::TooLarge { limit: max_nodes, path: path.to_string() });
        }
        if depth > max_depth {
            return Err(LogicError::TooDeep { limit: max_depth, path: path.to_string() });
        }
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.walk(item, path.index(i), depth + 1))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(map) => self.walk_object(map, path, depth),
            scalar => Ok(scalar.clone()),
        }
    }

    fn walk_object(&mut self, map: &Map<String, Value>, path: Path<'_>, depth: usize) -> Result<Value, LogicError> {
        let Some((op, arg)) = map.iter().next() else { return Ok(Value::Object(Map::new())) };
        if op == "$ref" && map.len() == 1 {
            if let Some(evaluators) = self.env.evaluators {
                return self.walk_ref(evaluators, arg, path, depth);
            }
        }
        // json-logic-engine reports objects with several keys as unknown operators too.
        if map.len() > 1 || !OPERATORS.contains(&op.as_str()) {
            return Err(LogicError::UnknownOperator { op: op.clone(), path: path.to_string() });
        }
        let arg = self.walk(arg, path.field(op), depth + 1)?;
        Ok(Value::Object(Map::from_iter([(op.clone(), arg)])))
    }

    fn walk_ref(
        &mut self,
        evaluators: &Map<String, Value>,
        name: &Value,
        path: Path<'_>,
        depth: usize,
    ) -> Result<Value, LogicError> {
        let name = match name {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Some(target) = evaluators.get(&name) else {
            return Err(LogicError::UnknownRef { name, path: path.to_string() });
        };
        if self.stack.contains(&name) {
            let message = format!("evaluator `{name}` refers to itself through {}", self.stack.join(" -> "));
            return Err(LogicError::BadArguments { op: "$ref".to_owned(), path: path.to_string(), message });
        }
        self.stack.push(name);
        // The reference itself counts as a level, like the operator it stands for.
        let resolved = self.walk(target, path, depth);
        self.stack.pop();
        resolved
    }
}

/// Compiles a resolved expression.
pub(crate) fn compile(v: &Value) -> Result<Node, LogicError> {
    Compiler { folding: false }.node(v, Path::Root(""))
}

/// Whether json-logic-engine would treat `v` as deterministic (and so run it at build).
fn deterministic(v: &Value, in_iter: bool) -> bool {
    match v {
        Value::Array(items) => items.iter().all(|i| deterministic(i, in_iter)),
        Value::Object(map) => {
            let Some((op, arg)) = map.iter().next() else { return true };
            match op.as_str() {
                "var" => in_iter && !Val::from_json(arg).to_js_string().contains("../../"),
                "missing" => matches!(arg, Value::Array(a) if a.is_empty()),
                "missing_some" => false,
                "map" | "filter" | "all" | "every" | "some" | "none" | "reduce" => {
                    let Value::Array(a) = arg else { return true };
                    a.first().is_none_or(|l| deterministic(l, in_iter))
                        && a.get(1).is_none_or(|b| deterministic(b, true))
                }
                f if FLAGD_OPERATORS.contains(&f) => false,
                _ => deterministic(arg, in_iter),
            }
        }
        _ => true,
    }
}

struct Compiler {
    /// Inside a sub-expression being folded: compile with the interpreter's semantics.
    folding: bool,
}

impl Compiler {
    fn node(&self, v: &Value, path: Path<'_>) -> Result<Node, LogicError> {
        match v {
            Value::Array(items) => {
                let nodes = self.list(items, path)?;
                Ok(constant_array(nodes))
            }
            Value::Object(map) => match map.iter().next() {
                None => Ok(Node::Const(Val::Obj(Vec::new()))),
                Some((op, arg)) if !self.folding && deterministic(v, false) => self.fold(op, arg, path),
                Some((op, arg)) => self.op(op, arg, path.field(op)),
            },
            scalar => Ok(Node::Const(Val::from_json(scalar).into_owned())),
        }
    }

    /// Runs a deterministic sub-expression now, as json-logic-engine's build does.
    fn fold(&self, op: &str, arg: &Value, path: Path<'_>) -> Result<Node, LogicError> {
        let node = Compiler { folding: true }.op(op, arg, path.field(op))?;
        let ctx = EvaluationContext::new();
        let env = Env { ctx: &ctx, flag_key: "", key_hash: Murmur3::new() };
        match eval(&node, &env, &Val::Obj(Vec::new()), &mut Val::Null) {
            Ok(val) => Ok(Node::Const(val.into_owned())),
            Err(e) => Err(LogicError::BadArguments {
                op: op.to_owned(),
                path: path.field(op).to_string(),
                message: format!("always fails when evaluated ({})", e.0),
            }),
        }
    }

    fn op(&self, op: &str, arg: &Value, path: Path<'_>) -> Result<Node, LogicError> {
        let bad = |message: &str| LogicError::BadArguments {
            op: op.to_owned(),
            path: path.to_string(),
            message: message.to_owned(),
        };
        let boxed = |v: &Value| self.node(v, path).map(Box::new);
        Ok(match op {
            "var" => self.var(arg, path)?,
            "if" | "?:" => self.if_(arg, path)?,
            "and" | "or" => match arg {
                Value::Array(a) if a.is_empty() => Node::Const(Val::Null),
                Value::Array(a) => {
                    let nodes = self.list(a, path)?;
                    if op == "and" { Node::And(nodes) } else { Node::Or(nodes) }
                }
                _ => Node::Throw(INVALID_ARGUMENTS),
            },
            "!" | "not" | "!!" => {
                let inner = match arg {
                    Value::Array(a) => a
                        .first()
                        .map_or(Ok(Box::new(Node::Const(Val::Null))), |v| self.node(v, path.index(0)).map(Box::new))?,
                    other => boxed(other)?,
                };
                if op == "!!" { Node::Truthy(inner) } else { Node::Not(inner) }
            }
            "<" | "<=" | ">" | ">=" | "==" | "===" | "!=" | "!==" => match arg {
                Value::Array(a) if a.len() >= 2 => Node::Cmp(cmp_op(op), self.list(a, path)?, !self.folding),
                _ => Node::Throw(INVALID_ARGUMENTS),
            },
            "in" => match arg {
                Value::Array(a) => Node::In(self.item(a, 0, path)?, self.item(a, 1, path)?),
                other => Node::Call(Func::In, self.args(other, path)?),
            },
            "cat" => self.cat(arg, path)?,
            "+" | "-" | "*" | "/" | "%" => self.arith(arith_op(op), arg, path).map_err(bad)?,
            "map" | "filter" | "all" | "every" | "some" | "none" => {
                let Value::Array(a) = arg else { return Err(bad(INVALID_ARGUMENTS)) };
                let kind = match iter_kind(op) {
                    IterKind::All if self.folding => IterKind::AllLoose,
                    kind => kind,
                };
                Node::Iter(kind, self.item(a, 0, path)?, self.item(a, 1, path)?)
            }
            "reduce" => {
                let Value::Array(a) = arg else { return Err(bad(INVALID_ARGUMENTS)) };
                if let Some(rewritten) = self.folding.then(|| reduce_idiom(a)).flatten() {
                    return self.node(&rewritten, path);
                }
                let init = if a.len() >= 3 { Some(self.item(a, 2, path)?) } else { None };
                Node::Reduce { list: self.item(a, 0, path)?, body: self.item(a, 1, path)?, init }
            }
            "fractional" => {
                let args = self.args(arg, path)?;
                super::fractional::specialise(args)
            }
            _ => Node::Call(func(op).ok_or_else(|| bad("unsupported operator"))?, self.args(arg, path)?),
        })
    }

    fn list(&self, items: &[Value], path: Path<'_>) -> Result<Vec<Node>, LogicError> {
        items.iter().enumerate().map(|(i, v)| self.node(v, path.index(i))).collect()
    }

    /// Item `i` of an argument list; a missing one reads as `undefined` (here: null).
    fn item(&self, items: &[Value], i: usize, path: Path<'_>) -> Result<Box<Node>, LogicError> {
        match items.get(i) {
            Some(v) => self.node(v, path.index(i)).map(Box::new),
            None => Ok(Box::new(Node::Const(Val::Null))),
        }
    }

    fn args(&self, arg: &Value, path: Path<'_>) -> Result<Args, LogicError> {
        Ok(match arg {
            Value::Array(a) => Args::List(self.list(a, path)?),
            Value::Object(m) if !m.is_empty() => Args::Spread(Box::new(self.node(arg, path)?)),
            other => Args::List(vec![self.node(other, path)?]),
        })
    }

    fn var(&self, arg: &Value, path: Path<'_>) -> Result<Node, LogicError> {
        let (key, default) = match arg {
            Value::Array(a) if a.len() <= 2 => (a.first(), a.get(1)),
            Value::Array(_) | Value::Object(_) => return Ok(Node::VarDyn(Box::new(self.node(arg, path)?))),
            other => (Some(other), None),
        };
        let key = match key {
            None | Some(Value::Null) => return Ok(Node::Data),
            Some(Value::String(s)) if s.is_empty() => return Ok(Node::Data),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => Val::from_json(&Value::Number(n.clone())).to_js_string().into_owned(),
            Some(_) => return Ok(Node::VarDyn(Box::new(self.node(arg, path)?))),
        };
        if key.contains("../") {
            return Ok(Node::VarDyn(Box::new(self.node(arg, path)?)));
        }
        let default = default.map(|d| self.node(d, path.index(1)).map(Box::new)).transpose()?;
        Ok(Node::Var { path: split_path(&key).into_boxed_slice(), default, nullish: !self.folding })
    }

    fn if_(&self, arg: &Value, path: Path<'_>) -> Result<Node, LogicError> {
        let Value::Array(a) = arg else { return Ok(Node::Throw(INVALID_ARGUMENTS)) };
        match a.len() {
            0 => Ok(Node::Const(Val::Null)),
            1 => self.node(&a[0], path.index(0)),
            // json-logic-engine compiles `if` only from three arguments; with two it runs
            // the interpreter's method, so the branches get the interpreter's semantics.
            2 => {
                let mut nodes = Compiler { folding: true }.list(a, path)?;
                nodes.push(Node::Const(Val::Null));
                Ok(Node::If(nodes))
            }
            _ => {
                let mut nodes = self.list(a, path)?;
                if nodes.len() % 2 == 0 {
                    nodes.push(Node::Const(Val::Null));
                }
                Ok(Node::If(nodes))
            }
        }
    }

    fn cat(&self, arg: &Value, path: Path<'_>) -> Result<Node, LogicError> {
        Ok(match arg {
            Value::String(_) | Value::Number(_) => {
                Node::Const(Val::Str(Cow::Owned(Val::from_json(arg).to_js_string().into_owned())))
            }
            Value::Array(a) => Node::Cat { parts: self.list(a, path)?, skip_null: self.folding },
            other => Node::Call(Func::Cat, Args::Spread(Box::new(self.node(other, path)?))),
        })
    }

    fn arith(&self, op: ArithOp, arg: &Value, path: Path<'_>) -> Result<Node, &'static str> {
        let Value::Array(items) = arg else {
            return Ok(match arg {
                Value::Object(m) if !m.is_empty() => {
                    Node::ArithOf(op, Box::new(self.node(arg, path).map_err(|_| INVALID_ARGUMENTS)?))
                }
                // The interpreter passes a literal to `+`/`-` as is and wraps it for the rest.
                lit if matches!(op, ArithOp::Add | ArithOp::Sub) => {
                    Node::ArithOf(op, Box::new(Node::Const(Val::from_json(lit).into_owned())))
                }
                lit => Node::Arith(op, vec![Node::Const(Val::from_json(lit).into_owned())]),
            });
        };
        let min_len = match op {
            ArithOp::Sub | ArithOp::Div => 1,
            ArithOp::Rem => 2,
            ArithOp::Add | ArithOp::Mul => 0,
        };
        if items.len() < min_len {
            return Err(INVALID_ARGUMENTS);
        }
        let mut nodes = Vec::with_capacity(items.len() + 1);
        if op == ArithOp::Div && items.len() == 1 {
            nodes.push(Node::Const(Val::Num(1.0)));
        }
        for (i, item) in items.iter().enumerate() {
            let node = self.operand(item, path.index(i))?;
            // A literal zero divisor fails the build (the generated code checks for `+0`).
            let divisor = op == ArithOp::Div && !nodes.is_empty();
            if divisor
                && matches!(node, Node::Const(Val::Num(n)) if n == 0.0)
                && !matches!(item, Value::Bool(_) | Value::Null)
            {
                return Err("NaN");
            }
            nodes.push(node);
        }
        Ok(Node::Arith(op, nodes))
    }

    /// An arithmetic operand: literals are converted to numbers now (failing the build
    /// when they are not numbers), expressions are left to run time.
    fn operand(&self, item: &Value, path: Path<'_>) -> Result<Node, &'static str> {
        let node = match item {
            Value::Array(_) => return Err("NaN"),
            Value::Object(m) if m.is_empty() => return Err("NaN"),
            _ => self.node(item, path).map_err(|_| "NaN")?,
        };
        Ok(match node {
            Node::Const(v @ (Val::Null | Val::Bool(_) | Val::Str(_))) => {
                let n = v.to_number();
                if n.is_nan() {
                    return Err("NaN");
                }
                Node::Const(Val::Num(n))
            }
            other => other,
        })
    }
}

/// An array whose items are all constants is itself a constant (borrowed when evaluated).
fn constant_array(nodes: Vec<Node>) -> Node {
    if nodes.iter().all(|n| matches!(n, Node::Const(_))) {
        let vals = nodes.into_iter().filter_map(|n| if let Node::Const(v) = n { Some(v) } else { None }).collect();
        Node::Const(Val::Arr(vals))
    } else {
        Node::Array(nodes)
    }
}

fn cmp_op(op: &str) -> CmpOp {
    match op {
        "<" => CmpOp::Lt,
        "<=" => CmpOp::Le,
        ">" => CmpOp::Gt,
        ">=" => CmpOp::Ge,
        "==" => CmpOp::Eq,
        "===" => CmpOp::StrictEq,
        "!=" => CmpOp::Ne,
        _ => CmpOp::StrictNe,
    }
}

fn arith_op(op: &str) -> ArithOp {
    match op {
        "+" => ArithOp::Add,
        "-" => ArithOp::Sub,
        "*" => ArithOp::Mul,
        "/" => ArithOp::Div,
        _ => ArithOp::Rem,
    }
}

fn iter_kind(op: &str) -> IterKind {
    match op {
        "map" => IterKind::Map,
        "filter" => IterKind::Filter,
        "all" | "every" => IterKind::All,
        "some" => IterKind::Some,
        _ => IterKind::None,
    }
}

fn func(op: &str) -> Option<Func> {
    const TABLE: [(&str, Func); 10] = [
        ("max", Func::Max),
        ("min", Func::Min),
        ("substr", Func::Substr),
        ("merge", Func::Merge),
        ("missing", Func::Missing),
        ("missing_some", Func::MissingSome),
        ("starts_with", Func::StartsWith),
        ("ends_with", Func::EndsWith),
        ("sem_ver", Func::SemVer),
        ("cat", Func::Cat),
    ];
    TABLE.iter().find(|(name, _)| *name == op).map(|(_, f)| *f)
}

/// json-logic-engine's path splitting: `.` separates, `\` escapes `.`, `/` and itself.
pub(crate) fn split_path(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('.' | '/' | '\\')) => {
                    current.push(next);
                    chars.next();
                }
                _ => current.push('\\'),
            },
            '.' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    // Mirrors `if (parts.length !== str.length) parts.push(current)` (UTF-16 length).
    if parts.len() != s.encode_utf16().count() {
        parts.push(current);
    }
    parts
}

/// The interpreter's optimizer turns `reduce` with a body of `+` (or `*`) over exactly
/// `accumulator` and `current` into arithmetic over the whole list, which coerces
/// non-arrays instead of failing; mirror that rewrite.
fn reduce_idiom(args: &[Value]) -> Option<Value> {
    let (root, body) = (args.first()?, args.get(1)?.as_object()?);
    let init = args.get(2);
    [("+", 0), ("*", 1)].into_iter().find_map(|(op, unit)| {
        let operands = body.get(op)?.as_array()?;
        let names: Vec<&str> = operands.iter().filter_map(|o| o.get("var")?.as_str()).collect();
        let is_fold = operands.len() == 2
            && operands.iter().all(|o| o.get("var").is_some())
            && names.contains(&"accumulator")
            && names.contains(&"current");
        // `+` replaces any falsy initial value with 0; `*` only a missing one with 1.
        let init = match (op, init) {
            ("+", Some(v)) if js_truthy_literal(v) => v.clone(),
            ("*", Some(v)) => v.clone(),
            _ => Value::from(unit),
        };
        is_fold.then(|| serde_json::json!({ op: [{ op: root }, init] }))
    })
}

fn js_truthy_literal(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}
