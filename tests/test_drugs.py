"""The drug table `pipeline/data/drugs.csv`: what it holds, its error messages, competitive sites, safe Hill
slopes, and a new drug as one row (in a copy of the package)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipeline.model import drugs, network, parameters, simulate, solver
from pipeline import vocabulary as v
from pipeline.problems import InputError

ROOT = Path(__file__).parents[1]
TIGHT = solver.SolverSettings(rtol=1e-10, atol=1e-12, max_steps=200_000)


def test_table_holds_the_drugs_in_order_with_their_sites_and_parameters():
    assert v.DRUGS == ("alpelisib", "MK2206", "ipatasertib", "everolimus", "AZD8055", "RapaLink1", "trametinib",
                       "AZD1208")
    assert [b.site for b in drugs.bindings()] == list(network.OCCUPANCIES)
    assert [b.site for b in drugs.rows("AZD8055")] == ["TK1", "TK2"]
    assert drugs.ic50s("AZD8055") == ("IC50_AZD8055", "IC50_AZD8055")
    assert drugs.ic50s("RapaLink1") == ("IC50_RapaLink1_C1", "IC50_RapaLink1_C2")
    assert drugs.hill("RapaLink1") == "h_RapaLink1"
    assert drugs.doses("MK2206") == (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    assert drugs.doses("everolimus")[0] == 0.0001 and drugs.doses("everolimus")[-1] == 0.1
    for b in drugs.bindings():
        assert {b.ic50, b.hill} <= set(parameters.names())
    with pytest.raises(KeyError, match="drugs.csv"):
        drugs.rows("capivasertib")


def bad_table(tmp_path, monkeypatch, text: str) -> str:
    path = tmp_path / "drugs.csv"
    path.write_text(text)
    monkeypatch.setattr(drugs, "TABLE_PATH", path)
    drugs.bindings.cache_clear()
    try:
        with pytest.raises(InputError) as e:
            drugs.bindings()
            drugs.check_sites(network.OCCUPANCIES)
    finally:
        drugs.bindings.cache_clear()
    return str(e.value)


HEADER = "drug,site,target,mode,ic50,hill,doses_uM,description\n"
GOOD = "ipatasertib,ipa,AKT,ATP-competitive,IC50_ipatasertib,h_ipatasertib,0.1;1,\n"


BAD = {
    "unknown-ic50": ("capivasertib,ipa,AKT,ATP-competitive,IC50_capivasertib,h_ipatasertib,0.1;1,\n",
                     ["row 3", "column 'ic50'", "'IC50_capivasertib'", "is not a parameter", "parameters.csv",
                      "add a row IC50_capivasertib", "did you mean 'IC50_ipatasertib'"]),
    "unknown-hill": ("capivasertib,ipa,AKT,ATP-competitive,IC50_ipatasertib,h_capi,0.1;1,\n",
                     ["row 3", "column 'hill'", "'h_capi'", "is not a parameter"]),
    "unknown-site": ("capivasertib,ipA,AKT,ATP-competitive,IC50_ipatasertib,h_ipatasertib,0.1;1,\n",
                     ["row 3", "column 'site'", "'ipA'", "not a binding site", "did you mean 'ipa'",
                      "pipeline/model/network.py"]),
    "bad-name": ("capi-vasertib,ipa,AKT,ATP-competitive,IC50_ipatasertib,h_ipatasertib,0.1;1,\n",
                 ["row 3", "column 'drug'", "not a valid drug name", "letters, digits and _"]),
    "bad-doses": ("capivasertib,ipa,AKT,ATP-competitive,IC50_ipatasertib,h_ipatasertib,\"0,1;1\",\n",
                  ["row 3", "column 'doses_uM'", "not a list of doses", "separated by ';'"]),
    "blank-site": ("capivasertib,,AKT,ATP-competitive,IC50_ipatasertib,h_ipatasertib,0.1;1,\n",
                   ["row 3", "column 'site'", "is blank"]),
    "repeated-row": (GOOD, ["row 3", "repeats the drug and site of row 2"]),
    "two-hill-slopes": ("ipatasertib,MK,AKT,ATP-competitive,IC50_ipatasertib,h_MK2206,0.1;1,\n",
                        ["row 3", "column 'hill'", "differs from row 2 of the same drug", "one Hill slope"]),
}


@pytest.mark.parametrize("rows, expected", BAD.values(), ids=BAD.keys())
def test_bad_table_is_a_clear_error(tmp_path, monkeypatch, rows, expected):
    message = bad_table(tmp_path, monkeypatch, HEADER + GOOD + rows)
    assert message.count("\n") == 0, message  # one problem, one line
    for fragment in ["drugs.csv", *expected]:
        assert fragment in message, (fragment, message)


def test_missing_column_is_a_clear_error(tmp_path, monkeypatch):
    message = bad_table(tmp_path, monkeypatch, HEADER.replace(",hill", "") + "x,ipa,,,IC50_ipatasertib,1,\n")
    assert "row 1" in message and "lacks the column(s) hill" in message and HEADER.strip() in message


def test_one_drug_per_site_is_the_hill_occupancy_and_zero_dose_is_zero():
    p = {**parameters.nominal(), "h_MK2206": 0.7, "h_AZD8055": 1.6}
    doses = np.array([0.0, 0.3, 1.0, 0.01, 0.05, 0.002, 0.0, 1.5])
    theta = np.asarray(network.occupancies(p, doses))
    for k, (site, drug, ic50, hill) in enumerate(network.DRUG_SITES):
        d, h = doses[v.DRUGS.index(drug)], p[hill]
        assert theta[k] == pytest.approx(d ** h / (d ** h + p[ic50] ** h), rel=1e-13, abs=0), site


def test_drugs_on_one_site_compete(monkeypatch):
    """Two drugs on one site: theta = (r1 + r2) / (1 + r1 + r2), r = (D / IC50)^h (here ipatasertib also on MK)."""
    monkeypatch.setattr(network, "DRUG_SITES", network.DRUG_SITES + (("MK", "ipatasertib", "IC50_ipatasertib",
                                                                      "h_ipatasertib"),))
    p = {**parameters.nominal(), "h_MK2206": 0.7, "h_ipatasertib": 1.3}
    doses = np.zeros(len(v.DRUGS))
    doses[v.DRUGS.index("MK2206")], doses[v.DRUGS.index("ipatasertib")] = 0.3, 0.5
    r = [(0.3 / p["IC50_MK2206"]) ** 0.7, (0.5 / p["IC50_ipatasertib"]) ** 1.3]
    theta = dict(zip(network.OCCUPANCIES, np.asarray(network.occupancies(p, doses))))
    assert theta["MK"] == pytest.approx(sum(r) / (1 + sum(r)), rel=1e-13)
    assert theta["ipa"] == pytest.approx(r[1] / (1 + r[1]), rel=1e-13)
    assert theta["alp"] == 0.0


def test_gradient_in_hill_slopes_and_ic50s_is_finite_at_zero_dose_and_matches_finite_differences():
    """d/d log(theta) of the observables with MK-2206 on and AZD1208 at zero dose (its Hill slope 0.8 < 1, where
    (0 / IC50)^h had NaN derivatives): finite, 0 for the absent drug, central differences for the present one."""
    names = ["h_MK2206", "h_AZD1208", "IC50_AZD1208"]
    idx = jnp.array([parameters.names().index(n) for n in names])
    base = jnp.asarray(parameters.as_array({**parameters.nominal(), "h_MK2206": 1.2, "h_AZD1208": 0.8}))
    conds = simulate.conditions(stimulus=["IGF1"], doses_uM=[{"MK2206": 0.3}], pretreatment_min=[30.0])
    times = np.array([[0.0, 15.0]])

    def summary(log_theta):
        sim = simulate.simulate(base.at[idx].set(jnp.exp(log_theta)), conds, times, TIGHT)
        return jnp.sum(jnp.log(sim.observables)) + 0.0 * jnp.sum(sim.ok)

    x0 = jnp.log(base[idx])
    grad = np.asarray(jax.jit(jax.grad(summary))(x0))
    assert np.all(np.isfinite(grad)), dict(zip(names, grad))
    assert grad[1] == 0.0 and grad[2] == 0.0  # AZD1208 is absent: its parameters do not act
    f, h = jax.jit(summary), 1e-4
    fd = (f(x0.at[0].add(h)) - f(x0.at[0].add(-h))) / (2 * h)
    assert abs(float(fd)) > 1e-3
    assert grad[0] == pytest.approx(float(fd), rel=1e-4)


NEW_DRUG_SCRIPT = """
import json, sys, tempfile
from pathlib import Path
import numpy as np
import pipeline
from pipeline import vocabulary as v
from pipeline.blots import dataset
from pipeline.model import simulate
assert pipeline.__file__.startswith(sys.argv[1]), pipeline.__file__
D = 0.5
conds = simulate.conditions(stimulus=["IGF1"] * 3, pretreatment_min=[30.0] * 3,
                            doses_uM=[{"capivasertib": D}, {"ipatasertib": D},
                                      {"capivasertib": D / 2, "ipatasertib": D / 2}])
sim = simulate.simulate(simulate.nominal_values(), conds, np.tile([0.0, 15.0], (3, 1)))
folder = Path(tempfile.mkdtemp())
(folder / "dataset.yaml").write_text("name: n\\ndescription: ''\\nreference_line: P\\nprovenance: test\\n")
(folder / "conditions.csv").write_text("condition_id,cell_line,stimulus,stimulus_conc,pretreatment_min,"
                                       "capivasertib_uM\\nc1,P,IGF1,10,30,0.5\\n")
(folder / "measurements.csv").write_text("blot_id,condition_id,time_min,target,signal\\n"
                                         "b,c1,15,pERK,1.0\\nb,c1,15,pAKT_S473,1.2\\n")
ds, problems = dataset.check(folder)
print(json.dumps({"drugs": v.DRUGS, "ok": np.asarray(sim.ok).tolist(), "obs": np.asarray(sim.observables).tolist(),
                  "problems": [str(p) for p in problems if p.severity == "error"],
                  "dataset_drugs": ds.drugs if ds else None}))
"""


def test_a_new_drug_like_an_existing_one_is_one_row_plus_its_parameters(tmp_path):
    """capivasertib (ATP-competitive on AKT, like ipatasertib): a row in a copy's drugs.csv and its IC50 and Hill
    rows in parameters.csv; it then simulates as ipatasertib does, and shares the site competitively."""
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    data = tmp_path / "pipeline" / "data"
    with (data / "drugs.csv").open("a") as f:
        f.write("capivasertib,ipa,AKT,ATP-competitive,IC50_capivasertib,h_capivasertib,0.03;0.1;0.3;1;3;10,"
                "ATP-site AKT inhibitor\n")
    table = (data / "parameters.csv").read_text()
    copies = [line.replace("ipatasertib", "capivasertib", 1) for line in table.splitlines()
              if line.startswith(("IC50_ipatasertib,", "h_ipatasertib,"))]
    assert len(copies) == 2 and parameters.nominal()["h_ipatasertib"] == 1.0
    (data / "parameters.csv").write_text(table.rstrip("\n") + "\n" + "\n".join(copies) + "\n")

    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", NEW_DRUG_SCRIPT, str(tmp_path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["drugs"] == list(v.DRUGS) + ["capivasertib"]
    assert out["ok"] == [True, True, True]
    capi, ipa, half_each = np.array(out["obs"])
    np.testing.assert_allclose(capi, ipa, rtol=1e-8)
    np.testing.assert_allclose(half_each, ipa, rtol=1e-8)
    assert out["problems"] == [] and out["dataset_drugs"] == ["capivasertib"]
