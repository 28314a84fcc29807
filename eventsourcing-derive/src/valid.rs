//! Rules across the event methods of one `#[events]` block: an event's body must not call
//! another event method.
//!
//! Live, a nested call records its own event besides the outer one; replay then applies the
//! outer body (which calls it again) and the stored nested event too, so the reloaded state
//! differs from the live one. Only calls the macro can see are refused here: through `self`,
//! `Self::` or the type's name, also inside closures, blocks and macro arguments that parse as
//! expressions. Calls through helpers are caught at run time (`__private::record`).

use syn::{
    punctuated::Punctuated,
    visit::{self, Visit},
    Expr, ExprCall, ExprMethodCall, ExprPath, Ident, Token,
};

use crate::{ast::EventsImpl, ctxt::Ctxt};

/// Reports every call of an event method inside an event method's body.
pub(crate) fn check_event_bodies(cx: &mut Ctxt, parsed: &EventsImpl) {
    let events: Vec<(&Ident, bool)> = parsed
        .methods
        .iter()
        .map(|m| (&m.func.sig.ident, m.creator))
        .collect();
    for method in &parsed.methods {
        let mut finder = NestedCalls {
            cx: &mut *cx,
            outer: &method.func.sig.ident,
            events: &events,
            self_ident: &parsed.self_ident,
        };
        finder.visit_block(&method.func.block);
    }
}

struct NestedCalls<'a> {
    cx: &'a mut Ctxt,
    outer: &'a Ident,
    /// Every event method, and whether it is a creation event.
    events: &'a [(&'a Ident, bool)],
    self_ident: &'a Ident,
}

impl NestedCalls<'_> {
    fn report(&mut self, tokens: impl quote::ToTokens, called: &Ident) {
        let outer = self.outer;
        let creator = self.events.iter().any(|(e, c)| *e == called && *c);
        let instead = if creator {
            "build the value with a struct expression instead"
        } else {
            "call both from a command method instead"
        };
        self.cx.error_spanned_by(
            tokens,
            format!("event method `{outer}` calls event method `{called}`: an event's body is replayed from the stored event alone, so it must not record other events; {instead}"),
        );
    }

    fn event_named(&self, ident: &Ident) -> Option<&Ident> {
        self.events.iter().map(|(e, _)| *e).find(|e| *e == ident)
    }

    /// `Self::bump`, `<Self>::bump`, `Widget::bump`, `crate::Widget::bump`: an event method.
    fn event_path(&self, path: &ExprPath) -> Option<&Ident> {
        let segments = &path.path.segments;
        let last = segments.last()?;
        let owner_is_self = match &path.qself {
            Some(qself) => {
                qself.position == 0
                    && segments.len() == 1
                    && matches!(&*qself.ty, syn::Type::Path(t)
                        if t.qself.is_none() && self.names_self(&t.path))
            }
            None => {
                let owner = segments.iter().rev().nth(1)?;
                owner.ident == *self.self_ident || (owner.ident == "Self" && segments.len() == 2)
            }
        };
        owner_is_self
            .then(|| self.event_named(&last.ident))
            .flatten()
    }

    fn names_self(&self, path: &syn::Path) -> bool {
        path.is_ident("Self")
            || path
                .segments
                .last()
                .is_some_and(|s| s.ident == *self.self_ident)
    }
}

/// `self`, also as `(self)`, `*self`, `&mut *self`.
fn is_self(expr: &Expr) -> bool {
    match expr {
        Expr::Path(p) => p.qself.is_none() && p.path.is_ident("self"),
        Expr::Paren(e) => is_self(&e.expr),
        Expr::Group(e) => is_self(&e.expr),
        Expr::Unary(e) => matches!(e.op, syn::UnOp::Deref(_)) && is_self(&e.expr),
        Expr::Reference(e) => is_self(&e.expr),
        _ => false,
    }
}

impl<'ast> Visit<'ast> for NestedCalls<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast ExprMethodCall) {
        if is_self(&call.receiver) {
            if let Some(called) = self.event_named(&call.method).cloned() {
                self.report(call, &called);
            }
        }
        visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_call(&mut self, call: &'ast ExprCall) {
        if let Expr::Path(path) = &*call.func {
            if let Some(called) = self.event_path(path).cloned() {
                // The whole call, not just its path; the arguments may hold more calls.
                self.report(call, &called);
                for arg in &call.args {
                    self.visit_expr(arg);
                }
                return;
            }
        }
        visit::visit_expr_call(self, call);
    }

    /// `Self::bump` as a value, e.g. passed to `for_each`.
    fn visit_expr_path(&mut self, path: &'ast ExprPath) {
        if let Some(called) = self.event_path(path).cloned() {
            self.report(path, &called);
        }
    }

    /// Arguments of `vec![…]`, `assert!(…)`, `println!(…)` and the like, when they parse as
    /// expressions; other macros are left to the run-time guard.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
        if let Ok(args) = mac.parse_body_with(parser) {
            // The parsed arguments live shorter than `'ast`: a visitor of their own walks them.
            let mut inner = NestedCalls {
                cx: &mut *self.cx,
                outer: self.outer,
                events: self.events,
                self_ident: self.self_ident,
            };
            for arg in &args {
                inner.visit_expr(arg);
            }
        }
    }

    /// An item in the body (a nested `fn` or `impl`) has its own `self` and `Self`.
    fn visit_item(&mut self, _item: &'ast syn::Item) {}
}
