"""An SBML model as symbolic ODEs (sympy), for `pipeline.petab`.

What is read (python-libsbml): species (concentrations, or amounts with hasOnlySubstanceUnits),
compartments (constant sizes), parameters, reactions with constant stoichiometries, assignment
rules (substituted into everything that uses them), rate rules (extra states), initial
assignments and function definitions (expanded by libsbml). Piecewise expressions and `time`
are kept, so inputs such as a step of EGF are part of the vector field. Events, algebraic rules
and variable stoichiometries are reported as unsupported.

A parameter that is not constant and has no rule (an input set per experimental condition, as
PEtab's condition table does) is a parameter like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import libsbml
import sympy as sp

from pipeline.problems import InputError, Problem

TIME = sp.Symbol("time", real=True)
AVOGADRO = 6.02214076e23


@dataclass(frozen=True)
class OdeModel:
    """dx/dt = rhs(time, x, p); x(0) = initial(p). Every expression uses only `TIME`, the state symbols and
    the parameter symbols (assignment rules are substituted)."""

    states: tuple[str, ...]
    parameters: tuple[str, ...]  # constant inputs: SBML parameters, compartment sizes
    values: dict[str, float]  # the SBML file's own value of each parameter
    rhs: tuple[sp.Expr, ...]
    initial: tuple[sp.Expr, ...]  # in terms of parameters only
    expressions: dict[str, sp.Expr]  # assignment-rule targets, in terms of time, states and parameters

    def symbol(self, name: str) -> sp.Symbol:
        return sp.Symbol(name, real=True)

    def substitute(self, expr: sp.Expr) -> sp.Expr:
        """Replace assignment-rule targets in an expression written against this model (observables)."""
        subs = {self.symbol(k): v for k, v in self.expressions.items() if self.symbol(k) in expr.free_symbols}
        return expr.xreplace(subs) if subs else expr


def read(path: str | Path) -> OdeModel:
    """The symbolic ODE model of an SBML file; problems are raised together as an `InputError`."""
    path = Path(path)
    doc = libsbml.readSBMLFromFile(str(path))
    where = str(path)
    fatal = [doc.getError(i) for i in range(doc.getNumErrors())
             if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if fatal or doc.getModel() is None:
        raise InputError([Problem(where, f"not a readable SBML file: {e.getMessage().strip()}", line=e.getLine(),
                                  fix="check the file with an SBML validator") for e in fatal]
                         or [Problem(where, "the SBML document has no model", fix="export the model again")])
    props = libsbml.ConversionProperties()
    props.addOption("expandFunctionDefinitions", True)
    if doc.convert(props) != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise InputError([Problem(where, "its function definitions could not be expanded",
                                  fix="write the functions out in the rate laws")])
    return _Reader(doc.getModel(), where).model()


class _Reader:
    def __init__(self, m: libsbml.Model, where: str):
        self.m, self.where, self.problems = m, where, []

    def unsupported(self, what: str, fix: str) -> None:
        self.problems.append(Problem(self.where, f"{what} is not supported", fix=fix))

    def math(self, node) -> sp.Expr:
        return _to_sympy(node, self)

    def model(self) -> OdeModel:
        m = self.m
        if m.getNumEvents():
            self.unsupported(f"an SBML event ({m.getNumEvents()} in the model)",
                             "write time-dependent inputs as piecewise functions of time in an assignment rule")
        assignment, rate = {}, {}
        for rule in m.getListOfRules():
            if rule.isAssignment():
                assignment[rule.getVariable()] = self.math(rule.getMath())
            elif rule.isRate():
                rate[rule.getVariable()] = self.math(rule.getMath())
            else:
                self.unsupported("an algebraic rule", "rewrite it as an assignment or rate rule")
        init_assign = {a.getSymbol(): self.math(a.getMath()) for a in m.getListOfInitialAssignments()}

        sizes = {c.getId(): (c.getSize() if c.isSetSize() else 1.0) for c in m.getListOfCompartments()}
        for c in m.getListOfCompartments():
            if c.getId() in rate or c.getId() in assignment or not c.getConstant():
                self.unsupported(f"compartment '{c.getId()}' of varying size", "use a constant compartment size")

        states, initial, species_of = [], {}, {}
        for s in m.getListOfSpecies():
            sid = s.getId()
            if sid in assignment:
                continue
            states.append(sid)
            species_of[sid] = s
            if s.isSetInitialConcentration():
                value = sp.Float(s.getInitialConcentration())
                if s.getHasOnlySubstanceUnits():
                    value *= _sym(s.getCompartment())
            elif s.isSetInitialAmount():
                value = sp.Float(s.getInitialAmount())
                if not s.getHasOnlySubstanceUnits():
                    value /= _sym(s.getCompartment())
            else:
                value = sp.Float(0.0)
            initial[sid] = value
        params, values = [], {}
        for p in m.getListOfParameters():
            pid = p.getId()
            if pid in assignment:
                continue
            if pid in rate:
                states.append(pid)
                initial[pid] = sp.Float(p.getValue() if p.isSetValue() else 0.0)
            else:
                params.append(pid)
                values[pid] = p.getValue() if p.isSetValue() else 0.0
        for cid, size in sizes.items():
            params.append(cid)
            values[cid] = size
        for name, expr in init_assign.items():
            if name in initial:
                initial[name] = expr
            elif name in values:
                self.unsupported(f"an initial assignment to parameter '{name}'",
                                 "set the parameter's value in the PEtab parameter or condition table")

        flux = {x: sp.Integer(0) for x in states}
        for r in m.getListOfReactions():
            if not r.isSetKineticLaw():
                self.unsupported(f"reaction '{r.getId()}' without a kinetic law", "give it a rate law")
                continue
            law = r.getKineticLaw()
            local = {lp.getId(): sp.Float(lp.getValue()) for lp in list(law.getListOfLocalParameters())
                     + list(law.getListOfParameters())}
            rate_expr = self.math(law.getMath()).xreplace({_sym(k): v for k, v in local.items()})
            for refs, sign in ((r.getListOfReactants(), -1), (r.getListOfProducts(), 1)):
                for ref in refs:
                    sid = ref.getSpecies()
                    if ref.isSetStoichiometryMath() or (ref.isSetId() and (ref.getId() in rate
                                                                           or ref.getId() in assignment)):
                        self.unsupported(f"the variable stoichiometry of '{sid}' in reaction '{r.getId()}'",
                                         "use a constant stoichiometry")
                        continue
                    s = species_of.get(sid)
                    if s is None or s.getBoundaryCondition() or s.getConstant():
                        continue
                    stoich = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
                    term = sign * sp.Float(stoich) * rate_expr
                    if not s.getHasOnlySubstanceUnits():
                        term /= _sym(s.getCompartment())
                    flux[sid] += term
        for name, expr in rate.items():
            if name in flux:
                flux[name] = expr
            elif name not in states:
                self.unsupported(f"a rate rule for '{name}'", "rate rules may change species and parameters only")
        if self.problems:
            raise InputError(self.problems)

        expressions = _resolve(assignment, self.where)
        expand = lambda e: e.xreplace({_sym(k): v for k, v in expressions.items()})  # noqa: E731
        rhs = tuple(expand(flux[x]) for x in states)
        init = tuple(expand(initial[x]) for x in states)
        for x, e in zip(states, init):
            stray = {str(s) for s in e.free_symbols} & set(states)
            if stray or TIME in e.free_symbols:
                raise InputError([Problem(self.where, f"the initial value of '{x}' depends on states or time "
                                          f"({', '.join(sorted(stray)) or 'time'})",
                                          fix="give it an initial value in terms of parameters")])
        known = set(states) | set(params) | {"time"}
        stray = sorted({str(s) for e in rhs for s in e.free_symbols} - known)
        if stray:
            raise InputError([Problem(self.where, f"the rate equations use undefined symbols {', '.join(stray)}",
                                      fix="define them as parameters, species or rule targets")])
        return OdeModel(tuple(states), tuple(params), values, rhs, init, expressions)


def _resolve(assignment: dict[str, sp.Expr], where: str) -> dict[str, sp.Expr]:
    """Assignment rules written in terms of states, parameters and time only (rules may use rules)."""
    out = dict(assignment)
    subs = {_sym(k): v for k, v in out.items()}
    for _ in range(len(out) + 1):
        changed = False
        for k, e in out.items():
            new = e.xreplace(subs)
            if new != e:
                out[k], changed = new, True
        subs = {_sym(k): v for k, v in out.items()}
        if not changed:
            return out
    raise InputError([Problem(where, "the assignment rules refer to each other in a cycle",
                              fix="break the cycle")])


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


_UNARY = {libsbml.AST_FUNCTION_EXP: sp.exp, libsbml.AST_FUNCTION_LN: sp.log, libsbml.AST_FUNCTION_ABS: sp.Abs,
          libsbml.AST_FUNCTION_FLOOR: sp.floor, libsbml.AST_FUNCTION_CEILING: sp.ceiling,
          libsbml.AST_FUNCTION_SIN: sp.sin, libsbml.AST_FUNCTION_COS: sp.cos, libsbml.AST_FUNCTION_TAN: sp.tan,
          libsbml.AST_FUNCTION_TANH: sp.tanh, libsbml.AST_LOGICAL_NOT: sp.Not}
_RELATION = {libsbml.AST_RELATIONAL_EQ: sp.Eq, libsbml.AST_RELATIONAL_NEQ: sp.Ne,
             libsbml.AST_RELATIONAL_LT: sp.Lt, libsbml.AST_RELATIONAL_LEQ: sp.Le,
             libsbml.AST_RELATIONAL_GT: sp.Gt, libsbml.AST_RELATIONAL_GEQ: sp.Ge}
_NARY = {libsbml.AST_PLUS: sp.Add, libsbml.AST_TIMES: sp.Mul, libsbml.AST_LOGICAL_AND: sp.And,
         libsbml.AST_LOGICAL_OR: sp.Or, libsbml.AST_LOGICAL_XOR: sp.Xor}


def _to_sympy(node, reader: _Reader) -> sp.Expr:
    t = node.getType()
    kids = [_to_sympy(node.getChild(i), reader) for i in range(node.getNumChildren())]
    if t == libsbml.AST_INTEGER:
        return sp.Integer(node.getInteger())
    if t in (libsbml.AST_REAL, libsbml.AST_REAL_E):
        return sp.Float(node.getReal())
    if t == libsbml.AST_RATIONAL:
        return sp.Rational(node.getNumerator(), node.getDenominator())
    if t == libsbml.AST_NAME:
        return _sym(node.getName())
    if t == libsbml.AST_NAME_TIME:
        return TIME
    if t == libsbml.AST_NAME_AVOGADRO:
        return sp.Float(AVOGADRO)
    if t == libsbml.AST_CONSTANT_E:
        return sp.E
    if t == libsbml.AST_CONSTANT_PI:
        return sp.pi
    if t == libsbml.AST_CONSTANT_TRUE:
        return sp.true
    if t == libsbml.AST_CONSTANT_FALSE:
        return sp.false
    if t in _NARY:
        empty = {libsbml.AST_PLUS: sp.Integer(0), libsbml.AST_TIMES: sp.Integer(1)}.get(t, sp.true)
        return _NARY[t](*kids) if kids else empty
    if t == libsbml.AST_MINUS:
        return -kids[0] if len(kids) == 1 else kids[0] - kids[1]
    if t == libsbml.AST_DIVIDE:
        return kids[0] / kids[1]
    if t in (libsbml.AST_POWER, libsbml.AST_FUNCTION_POWER):
        return kids[0] ** kids[1]
    if t == libsbml.AST_FUNCTION_ROOT:
        return kids[-1] ** (1 / kids[0]) if len(kids) == 2 else sp.sqrt(kids[0])
    if t == libsbml.AST_FUNCTION_LOG:
        return sp.log(kids[-1], kids[0]) if len(kids) == 2 else sp.log(kids[0], 10)
    if t in _UNARY:
        return _UNARY[t](kids[0])
    if t in _RELATION:
        return _RELATION[t](kids[0], kids[1])
    if t == libsbml.AST_FUNCTION_MAX:
        return sp.Max(*kids)
    if t == libsbml.AST_FUNCTION_MIN:
        return sp.Min(*kids)
    if t == libsbml.AST_FUNCTION_PIECEWISE:
        pieces = [(kids[i], kids[i + 1]) for i in range(0, len(kids) - 1, 2)]
        otherwise = kids[-1] if len(kids) % 2 else sp.nan
        return sp.Piecewise(*pieces, (otherwise, True))
    reader.unsupported(f"the SBML function '{libsbml.formulaToL3String(node)}'",
                       "write it with arithmetic, exp, log, powers and piecewise")
    return sp.Integer(0)
