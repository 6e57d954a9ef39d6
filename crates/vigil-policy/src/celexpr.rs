//! Tetragon's `CelExpr` matchArgs operator (1.7): a CEL expression over the filter's
//! arguments, `arg0` being the argument at the filter's `args[0]`. Tetragon compiles it to BPF;
//! vigil takes the subset that the engine's integer comparisons already express:
//! comparisons of one argument with a constant, joined by `&&`. Each becomes one argument
//! filter (`GT`, `LT`, `Equal`, `NotEqual`), and the filters of a selector are ANDed, as the
//! comparisons were. Anything else is refused by name, at validation, so that `validate`,
//! `add` and `--tracing-policy` agree.

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};

use crate::types::Operator;

/// One comparison of the expression, in the engine's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// `N` of `argN`: an index into the filter's `args`.
    pub arg: usize,
    pub operator: Operator,
    pub value: String,
}

const SUBSET: &str =
    "CelExpr: only comparisons of integer arguments with constants joined by && are supported";

fn not_supported(what: impl std::fmt::Display) -> String {
    format!("{SUBSET}; {what} is not")
}

/// The comparisons `expr` stands for; `nargs` is the length of the filter's `args`.
/// An empty list is an expression that always holds (e.g. `arg0 >= -9223372036854775808`).
pub fn lower(expr: &str, nargs: usize) -> Result<Vec<Comparison>, String> {
    let ast = cel::parser::Parser::new().parse(expr).map_err(|errs| {
        let first = errs.errors.first();
        format!(
            "CelExpr: {expr:?} is not a CEL expression: column {}: {}",
            first.map_or(1, |e| e.pos.1.max(1)),
            first.map_or("does not parse", |e| e.msg.as_str())
        )
    })?;
    let mut out = Vec::new();
    conjunction(&ast, nargs, &mut out)?;
    Ok(out)
}

fn conjunction(e: &IdedExpr, nargs: usize, out: &mut Vec<Comparison>) -> Result<(), String> {
    match &e.expr {
        Expr::Call(call) if call.func_name == operators::LOGICAL_AND && call.args.len() == 2 => {
            conjunction(&call.args[0], nargs, out)?;
            conjunction(&call.args[1], nargs, out)
        }
        Expr::Call(call) if call.target.is_none() && call.args.len() == 2 => {
            let Some(cmp) = comparison_operator(&call.func_name) else {
                return Err(not_supported(describe(e)));
            };
            comparison(cmp, &call.args[0], &call.args[1], nargs, out)
        }
        _ => Err(not_supported(describe(e))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

fn comparison_operator(name: &str) -> Option<Cmp> {
    Some(match name {
        operators::EQUALS => Cmp::Eq,
        operators::NOT_EQUALS => Cmp::Ne,
        operators::GREATER => Cmp::Gt,
        operators::GREATER_EQUALS => Cmp::Ge,
        operators::LESS => Cmp::Lt,
        operators::LESS_EQUALS => Cmp::Le,
        _ => return None,
    })
}

fn comparison(
    cmp: Cmp,
    left: &IdedExpr,
    right: &IdedExpr,
    nargs: usize,
    out: &mut Vec<Comparison>,
) -> Result<(), String> {
    let (arg, constant, cmp) = match (argument(left, nargs)?, argument(right, nargs)?) {
        (Some(a), None) => (a, constant(right)?, cmp),
        // `5 < arg0` is `arg0 > 5`
        (None, Some(a)) => (
            a,
            constant(left)?,
            match cmp {
                Cmp::Gt => Cmp::Lt,
                Cmp::Ge => Cmp::Le,
                Cmp::Lt => Cmp::Gt,
                Cmp::Le => Cmp::Ge,
                same => same,
            },
        ),
        (Some(_), Some(_)) => return Err(not_supported("a comparison of two arguments")),
        (None, None) => {
            // name the side that is not a constant (`arg0 + 1`), if one is not
            constant(left)?;
            constant(right)?;
            return Err(not_supported("a comparison of two constants"));
        }
    };
    // The engine compares 64-bit signed values; an unsigned constant past i64::MAX keeps
    // its bits, as the other integer filters' values do.
    let (operator, value) = match cmp {
        Cmp::Eq => (Operator::Equal, constant),
        Cmp::Ne => (Operator::NotEqual, constant),
        Cmp::Gt => (Operator::GreaterThan, constant),
        Cmp::Lt => (Operator::LessThan, constant),
        Cmp::Ge => (Operator::GreaterThan, constant - 1),
        Cmp::Le => (Operator::LessThan, constant + 1),
    };
    if value < i128::from(i64::MIN) || value > i128::from(u64::MAX) {
        // `arg0 >= i64::MIN` or `arg0 <= u64::MAX`: always true, nothing to filter
        return Ok(());
    }
    out.push(Comparison {
        arg,
        operator,
        value: value.to_string(),
    });
    Ok(())
}

/// `Some(N)` for `argN` (N below `nargs`); `None` for anything else.
fn argument(e: &IdedExpr, nargs: usize) -> Result<Option<usize>, String> {
    let Expr::Ident(name) = &e.expr else {
        return Ok(None);
    };
    let Some(n) = name
        .strip_prefix("arg")
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return Err(format!(
            "CelExpr: unknown identifier `{name}`; the arguments are arg0..arg{}",
            nargs.saturating_sub(1)
        ));
    };
    if n >= nargs {
        return Err(format!(
            "CelExpr: `{name}` is not declared: the filter's `args` has {nargs} entr{}",
            if nargs == 1 { "y" } else { "ies" }
        ));
    }
    Ok(Some(n))
}

/// An integer constant: a literal, negated or cast (`int32(5)`, `uint32(5)`, `5u`, `-5`).
fn constant(e: &IdedExpr) -> Result<i128, String> {
    let value = match &e.expr {
        Expr::Literal(LiteralValue::Int(i)) => Some(i128::from(*i.inner())),
        Expr::Literal(LiteralValue::UInt(u)) => Some(i128::from(*u.inner())),
        Expr::Call(call) if call.target.is_none() && call.args.len() == 1 => {
            match call.func_name.as_str() {
                operators::NEGATE => Some(-constant(&call.args[0])?),
                "int32" | "uint32" | "int" | "uint" => Some(constant(&call.args[0])?),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(v) = value else {
        return Err(not_supported(describe(e)));
    };
    if v < i128::from(i64::MIN) || v > i128::from(u64::MAX) {
        return Err(format!("CelExpr: the constant {v} is not a 64-bit integer"));
    }
    Ok(v)
}

/// What an unsupported node is, in a user's words.
fn describe(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Call(call) => match call.func_name.as_str() {
            operators::LOGICAL_OR => "`||`".to_owned(),
            operators::LOGICAL_NOT => "`!`".to_owned(),
            operators::CONDITIONAL => "`? :`".to_owned(),
            operators::ADD => "arithmetic (`+`)".to_owned(),
            operators::SUBSTRACT => "arithmetic (`-`)".to_owned(),
            operators::MULTIPLY => "arithmetic (`*`)".to_owned(),
            operators::DIVIDE => "arithmetic (`/`)".to_owned(),
            operators::MODULO => "arithmetic (`%`)".to_owned(),
            operators::IN => "`in`".to_owned(),
            operators::NEGATE => "arithmetic (unary `-`)".to_owned(),
            name if name.starts_with('_') || name.starts_with('@') => format!("`{name}`"),
            name => format!("the function `{name}()`"),
        },
        Expr::Comprehension(_) => "a comprehension (all, exists, map, filter)".to_owned(),
        Expr::Ident(name) => format!("the value `{name}` alone"),
        Expr::Literal(LiteralValue::Boolean(b)) => format!("the constant `{}`", b.inner()),
        Expr::Literal(LiteralValue::String(_)) => "a string constant".to_owned(),
        Expr::Literal(LiteralValue::Bytes(_)) => "a bytes constant".to_owned(),
        Expr::Literal(LiteralValue::Double(_)) => "a floating-point constant".to_owned(),
        Expr::Literal(LiteralValue::Null) => "`null`".to_owned(),
        Expr::Literal(_) => "a constant alone".to_owned(),
        Expr::Select(s) => format!("a field selection (`.{}`)", s.field),
        Expr::List(_) => "a list".to_owned(),
        Expr::Map(_) => "a map".to_owned(),
        Expr::Struct(_) => "a message".to_owned(),
        Expr::Unspecified => "an empty expression".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operator::*;

    fn cmp(arg: usize, operator: Operator, value: i128) -> Comparison {
        Comparison {
            arg,
            operator,
            value: value.to_string(),
        }
    }

    #[test]
    fn comparisons_joined_by_and_become_engine_filters() {
        assert_eq!(
            lower("arg0 > 5 && arg0 < 10", 1).unwrap(),
            vec![cmp(0, GreaterThan, 5), cmp(0, LessThan, 10)]
        );
        assert_eq!(
            lower(
                "arg1 >= int32(-3) && 7 >= arg0 && (arg0 != 2u && arg1 == -1)",
                2
            )
            .unwrap(),
            vec![
                cmp(1, GreaterThan, -4),
                cmp(0, LessThan, 8),
                cmp(0, NotEqual, 2),
                cmp(1, Equal, -1)
            ]
        );
        assert_eq!(
            lower("arg0 >= -9223372036854775808", 1).unwrap(),
            vec![],
            "always true"
        );
        assert_eq!(
            lower("arg0 == 18446744073709551615u", 1).unwrap(),
            vec![cmp(0, Equal, 18446744073709551615)]
        );
    }

    #[test]
    fn the_rest_is_refused_by_name() {
        let cases = [
            ("arg0 > 5 || arg0 < 2", "`||` is not"),
            (
                "arg0 - int32(10) == arg1 + int32(5)",
                "arithmetic (`-`) is not",
            ),
            ("arg0 + 1 > 5", "arithmetic (`+`) is not"),
            ("arg0 < arg1", "a comparison of two arguments is not"),
            ("1 < 2", "a comparison of two constants is not"),
            ("!(arg0 > 5)", "`!` is not"),
            ("arg0 > 5.5", "a floating-point constant is not"),
            ("and(arg0, 4) == 4", "the function `and()` is not"),
            ("arg0", "the value `arg0` alone is not"),
            ("arg0 == 'x'", "a string constant is not"),
        ];
        for (expr, tail) in cases {
            let e = lower(expr, 2).unwrap_err();
            assert!(
                e.starts_with(
                    "CelExpr: only comparisons of integer arguments with constants joined by && \
                     are supported; "
                ) && e.ends_with(tail),
                "{expr}: {e}"
            );
        }
        assert_eq!(
            lower("arg2 > 1", 2).unwrap_err(),
            "CelExpr: `arg2` is not declared: the filter's `args` has 2 entries"
        );
        assert!(
            lower("x > 1", 1)
                .unwrap_err()
                .contains("unknown identifier `x`")
        );
        assert!(
            lower("arg0 >", 1)
                .unwrap_err()
                .starts_with("CelExpr: \"arg0 >\" is not a CEL expression: column 7:")
        );
    }
}
