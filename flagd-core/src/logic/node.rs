//! The compiled expression tree that evaluation walks.

use super::value::Val;

/// One compiled operation. Shapes mirror the code json-logic-engine generates, so each
/// variant evaluates the way the generated JavaScript would.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Const(Val<'static>),
    /// An array literal with computed items.
    Array(Vec<Node>),
    /// `var` with a literal path: `context?.[a]?.[b] ?? default` (compiled) or the
    /// interpreter's "only undefined falls back" (`nullish == false`).
    Var {
        path: Box<[String]>,
        default: Option<Box<Node>>,
        nullish: bool,
    },
    /// `var` of `""`/`null`: the whole data.
    Data,
    /// `var` whose key is computed: the interpreter's method on the evaluated argument.
    VarDyn(Box<Node>),
    /// Condition/branch pairs followed by the else branch (always odd length).
    If(Vec<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Truthy(Box<Node>),
    /// `shared`: compiled code, where the operand check reads the shared `prev`.
    Cmp(CmpOp, Vec<Node>, bool),
    In(Box<Node>, Box<Node>),
    /// `'' + a + b …` (compiled: null prints as "null") or the interpreter's cat, which
    /// skips null (`skip_null`).
    Cat {
        parts: Vec<Node>,
        skip_null: bool,
    },
    /// Arithmetic over an argument list (operands already checked at compile time).
    Arith(ArithOp, Vec<Node>),
    /// Arithmetic over one computed value (usually an array).
    ArithOf(ArithOp, Box<Node>),
    Iter(IterKind, Box<Node>, Box<Node>),
    Reduce {
        list: Box<Node>,
        body: Box<Node>,
        init: Option<Box<Node>>,
    },
    Call(Func, Args),
    /// `fractional`; `buckets` is set when every bucket is a valid literal, so a string
    /// bucketing value only needs hashing and a scan.
    Fractional(Args, Option<Box<ConstBuckets>>),
    /// The usual shapes of `fractional`, specialised: literal buckets, bucketing by
    /// `flagKey + targetingKey` (`attribute: None`) or by `cat` of `$flagd.flagKey` and one
    /// attribute. Same results as [`Node::Fractional`], without walking the tree.
    FractionalFast {
        attribute: Option<Box<[String]>>,
        nullish: bool,
        buckets: Box<ConstBuckets>,
    },
    /// Fails when evaluated (what the generated JavaScript would throw).
    Throw(&'static str),
}

/// Literal `fractional` buckets, checked once: variants with cumulative weight ends.
#[derive(Debug, Clone)]
pub(crate) struct ConstBuckets {
    pub(crate) variants: Vec<(Val<'static>, u64)>,
    pub(crate) total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    StrictEq,
    Ne,
    StrictNe,
}

impl CmpOp {
    pub(crate) fn strict(self) -> bool {
        matches!(self, Self::StrictEq | Self::StrictNe)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IterKind {
    Map,
    Filter,
    All,
    /// The interpreter's `all`: walks anything with a length (strings by character) and
    /// is true for values without one.
    AllLoose,
    Some,
    None,
}

/// Operators evaluated as a plain function of their evaluated argument list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Max,
    Min,
    Substr,
    Merge,
    Missing,
    MissingSome,
    In,
    Cat,
    StartsWith,
    EndsWith,
    SemVer,
}

/// An operator's arguments: a literal list, or one expression whose value is spread
/// when it is an array (json-logic-engine's `coerceArray`).
#[derive(Debug, Clone)]
pub(crate) enum Args {
    List(Vec<Node>),
    Spread(Box<Node>),
}
