"""Schema and spot checks for benchmarks/paper_numbers.yaml (pure Python + PyYAML, no torch needed).

The YAML holds the source documents' own result-table numbers. Spot checks below assert values that were read
off the seed texts in ../shared/seeds/ (seed file and line in the comment). If those seed files are present, a
further test re-checks every stored number against the seed line cited in its row's trailing "# seed F:L" comment.
"""
from __future__ import annotations

import glob
import math
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "benchmarks" / "paper_numbers.yaml"
# The seeds live in shared/ beside the checkout (CI clones with shared/ next to it).
SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seeds"

KNOWN_PAPER_IDS = {
    "totalselfie", "fitcheck", "portrait_editing", "inverse_painting", "aligntok", "ldm_scaling", "vidm", "dift",
    "codi", "ltt_gan", "shadow_removal", "renoising", "semantic_stats", "cfld", "lecture",
}
PAPER_KEYS = {"paper", "title", "seed", "tables"}
TABLE_REQUIRED = {"table", "caption", "dataset", "split", "resolution", "metric_directions", "rows"}
TABLE_OPTIONAL = {"units", "notes"}
ROW_REQUIRED = {"method", "metrics"}
ROW_OPTIONAL = {"notes"}


@pytest.fixture(scope="module")
def data() -> dict:
    with open(YAML_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def papers(data) -> list:
    return data["papers"]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _table(papers, paper_id: str, table_id: str) -> dict:
    for p in papers:
        if p["paper"] == paper_id:
            for t in p["tables"]:
                if t["table"] == table_id:
                    return t
    raise KeyError(f"{paper_id}/{table_id}")


def _metrics(papers, paper_id: str, table_id: str, method: str) -> dict:
    for r in _table(papers, paper_id, table_id)["rows"]:
        if r["method"] == method:
            return r["metrics"]
    raise KeyError(f"{paper_id}/{table_id}/{method}")


# ----------------------------------------------------------------------------------------------- schema
def test_top_level(data):
    assert set(data) == {"papers"}
    assert isinstance(data["papers"], list) and data["papers"]


def test_paper_ids_unique_and_known(papers):
    ids = [p["paper"] for p in papers]
    assert len(ids) == len(set(ids)), ids
    for pid in ids:
        assert pid == pid.lower() and re.fullmatch(r"[a-z0-9_]+", pid), pid
        assert pid in KNOWN_PAPER_IDS, pid


def test_papers_have_tables(papers):
    for p in papers:
        assert set(p) == PAPER_KEYS, (p.get("paper"), set(p) ^ PAPER_KEYS)
        assert isinstance(p["title"], str) and p["title"].strip()
        assert isinstance(p["seed"], str) and re.match(r"^00[0-3]\b", p["seed"]), p["seed"]
        assert isinstance(p["tables"], list) and p["tables"], p["paper"]


def test_tables_schema(papers):
    for p in papers:
        ids = [t["table"] for t in p["tables"]]
        assert len(ids) == len(set(ids)), (p["paper"], ids)
        for t in p["tables"]:
            where = f"{p['paper']}/{t.get('table')}"
            keys = set(t)
            assert TABLE_REQUIRED <= keys, (where, TABLE_REQUIRED - keys)
            assert keys <= TABLE_REQUIRED | TABLE_OPTIONAL, (where, keys - TABLE_REQUIRED - TABLE_OPTIONAL)
            for k in ("table", "caption", "dataset", "split"):
                assert isinstance(t[k], str) and t[k].strip(), (where, k)
            assert t["resolution"] is None or (isinstance(t["resolution"], str) and t["resolution"].strip()), where
            for k in TABLE_OPTIONAL & keys:
                assert isinstance(t[k], str) and t[k].strip(), (where, k)
            assert isinstance(t["metric_directions"], dict) and t["metric_directions"], where
            for m, d in t["metric_directions"].items():
                assert isinstance(m, str) and m.strip(), where
                assert d in ("lower", "higher"), (where, m, d)
            assert isinstance(t["rows"], list) and t["rows"], f"{where} has no rows"


def test_rows_schema_and_values(papers):
    for p in papers:
        for t in p["tables"]:
            where = f"{p['paper']}/{t['table']}"
            methods = [r["method"] for r in t["rows"]]
            assert len(methods) == len(set(methods)), (where, methods)
            used = set()
            for r in t["rows"]:
                keys = set(r)
                assert ROW_REQUIRED <= keys and keys <= ROW_REQUIRED | ROW_OPTIONAL, (where, keys)
                assert isinstance(r["method"], str) and r["method"].strip(), where
                if "notes" in r:
                    assert isinstance(r["notes"], str) and r["notes"].strip(), (where, r["method"])
                assert isinstance(r["metrics"], dict) and r["metrics"], (where, r["method"])
                for m, v in r["metrics"].items():
                    assert _is_number(v), (where, r["method"], m, v)
                    assert m in t["metric_directions"], f"{where}: metric {m!r} has no direction"
                    used.add(m)
            unused = set(t["metric_directions"]) - used
            assert not unused, f"{where}: directions for unused metrics {unused}"


def test_fvd_vid_typo_normalised(papers):
    # Tables 4.2-4.4 print "FVD-VID", a typo for FID-VID (Table 4.1 spells it FID-VID).
    for tid in ("Table 4.1", "Table 4.2", "Table 4.3", "Table 4.4"):
        t = _table(papers, "fitcheck", tid)
        assert "FID-VID" in t["metric_directions"] and "FVD-VID" not in t["metric_directions"]


def test_garbled_cells_not_guessed(papers):
    # VIDM Table 3.1 128-TaiChi prints 3 numbers under 4 headers: it must not be stored.
    assert not any("TaiChi" in t["table"] for p in papers if p["paper"] == "vidm" for t in p["tables"])
    # CoDi Table 5.2: the inpainting row that lost its label (FID 15.950, seed 001:1034) is not stored.
    inp = _table(papers, "codi", "Table 5.2 (inpainting)")
    assert all(r["metrics"].get("FID") != 15.95 for r in inp["rows"])


# ----------------------------------------------------------------------------------------------- spot checks
def test_spot_fitcheck(papers):
    # seed 000:861  "Ours  0.381  0.497  16.80  116.6  51.69  854.9"  (LPIPS SSIM PSNR FID FID-VID FVD)
    assert _metrics(papers, "fitcheck", "Table 4.1", "Ours") == {
        "LPIPS": 0.381, "SSIM": 0.497, "PSNR": 16.80, "FID": 116.6, "FID-VID": 51.69, "FVD": 854.9}
    # seed 000:998  Table 4.2 Ours (SSIM LPIPS PSNR FID FVD-VID FVD) 0.799 0.183 23.61 79.02 23.11 279.3
    m = _metrics(papers, "fitcheck", "Table 4.2", "Ours")
    assert (m["SSIM"], m["LPIPS"], m["FID-VID"], m["FVD"]) == (0.799, 0.183, 23.11, 279.3)
    # seed 000:1022 Table 4.3 (UBC Fashion) Ours FVD 138.7; seed 000:1048 Table 4.4 (TikTok) Ours SSIM 0.807
    assert _metrics(papers, "fitcheck", "Table 4.3", "Ours")["FVD"] == 138.7
    assert _metrics(papers, "fitcheck", "Table 4.4", "Ours")["SSIM"] == 0.807
    # seed 000:851  MimicMotion FVD 947.8 in Table 4.1
    assert _metrics(papers, "fitcheck", "Table 4.1", "MimicMotion")["FVD"] == 947.8


def test_spot_cfld(papers):
    # seed 003:153  "CFLD (Ours)  6.804  0.1519  0.7378  18.235"  (256x176)
    assert _metrics(papers, "cfld", "Table 2 (256x176)", "CFLD (Ours)") == {
        "FID": 6.804, "LPIPS": 0.1519, "SSIM": 0.7378, "PSNR": 18.235}
    # seed 003:160  "CFLD (Ours)  7.149  0.1819  0.7478  17.645"  (512x352)
    assert _metrics(papers, "cfld", "Table 2 (512x352)", "CFLD (Ours)")["FID"] == 7.149
    # seed 003:151  PIDM‡ FID 6.440
    assert _metrics(papers, "cfld", "Table 2 (256x176)", "PIDM‡")["FID"] == 6.44
    # seed 003:220  ablation B3 LPIPS 0.1615 SSIM 0.7293
    assert _metrics(papers, "cfld", "Table 3", "B3") == {"LPIPS": 0.1615, "SSIM": 0.7293}


def test_spot_inverse_painting(papers):
    # seed 000:1666  "Ours  0.364  0.418  32.66  1.273  150.6"
    assert _metrics(papers, "inverse_painting", "Table 6.1", "Ours") == {
        "LPIPS": 0.364, "max-IoU": 0.418, "DDC": 32.66, "DTS": 1.273, "FID": 150.6}
    # seed 000:1814  full-painting Ours FVD 1273; seed 000:1817 cropped Ours FVD 1034
    assert _metrics(papers, "inverse_painting", "Table 6.2 (full paintings)", "Ours")["FVD"] == 1273
    assert _metrics(papers, "inverse_painting", "Table 6.2 (cropped paintings)", "Ours")["FVD"] == 1034


def test_spot_aligntok(papers):
    # seed 000:2010  "Full Model  0.26  25.83  0.117  35.09%  2.17  249.3  0.811  0.599"
    m = _metrics(papers, "aligntok", "Table 7.1", "Full Model")
    assert (m["rFID"], m["LinearProbeAcc"], m["gFID"], m["IS"], m["Recall"]) == (0.26, 35.09, 2.17, 249.3, 0.599)
    # seed 000:2107  LightningDiT + Ours, 800 epochs, QKNorm: gFID w/ CFG 1.37
    assert _metrics(papers, "aligntok", "Table 7.4", "LightningDiT (Ours, 800 ep, QKNorm)")["gFID-CFG"] == 1.37
    # seed 000:2071  f16d32 Ours gFID uncond / w/o CFG / w/ CFG = 11.80 / 4.05 / 2.17
    m = _metrics(papers, "aligntok", "Table 7.3 (f16d32)", "Ours (ViT)")
    assert (m["gFID-uncond"], m["gFID-noCFG"], m["gFID-CFG"]) == (11.80, 4.05, 2.17)
    # seed 000:2130  T2I Ours gFID 30.27
    assert _metrics(papers, "aligntok", "Table 7.5", "Ours")["gFID"] == 30.27


def test_spot_codi_and_ldm_scaling(papers):
    # seed 001:1045  "CoDi (Ours)  19.637  0.2656"
    assert _metrics(papers, "codi", "Table 5.2 (super-resolution)", "CoDi (Ours)") == {"FID": 19.637, "LPIPS": 0.2656}
    # seed 001:1037  4-step LDM FID 29.266
    assert _metrics(papers, "codi", "Table 5.2 (super-resolution)", "LDMs, 4 steps")["FID"] == 29.266
    # seed 001:1086  "- noise-consistency  1.22B  25.728  0.3252"
    assert _metrics(papers, "codi", "Table 5.3", "CoDi (Ours) - noise-consistency")["FID"] == 25.728
    # seed 001:416 (FID row) 866M -> 21.55;  seed 001:414 (GFLOPS row) 39M -> 25.3 as printed
    assert _metrics(papers, "ldm_scaling", "Table 2.1", "LDM 866M")["FID"] == 21.55
    assert _metrics(papers, "ldm_scaling", "Table 2.1", "LDM 39M")["GFLOPS"] == 25.3


def test_spot_thesis_b_other_chapters(papers):
    # seed 001:654  256-UCF101^16 VIDM 294.7
    assert _metrics(papers, "vidm", "Table 3.1 (256-UCF101)", "VIDM (ours)")["FVD-16"] == 294.7
    # seed 001:805  DiFT CelebV-Text FVD 42.03, CLIPSIM 0.220
    assert _metrics(papers, "dift", "Table 4.1 (CelebV-Text)", "DiFT (Ours)") == {
        "FVD": 42.03, "FID": 24.33, "CLIPSIM": 0.220}
    # seed 001:1311  LTT-GAN Deg. 49.88
    assert _metrics(papers, "ltt_gan", "Table 6.1", "LTT-GAN (Ours)")["Deg"] == 49.88
    # seed 001:1635  LFG-Diffusion AISTD shadow RMSE 5.15
    assert _metrics(papers, "shadow_removal", "Table 7.1", "LFG-Diffusion (Ours)")["RMSE-shadow"] == 5.15
    # seed 001:1923  Bi-Noising 4x SR PSNR 29.3996
    assert _metrics(papers, "renoising", "Table 8.2", "Bi-Noising (Ours)")["PSNR"] == 29.3996
    # seed 000:490  Total Selfie Ours PSNR 17.01
    assert _metrics(papers, "totalselfie", "Table 3.1", "Ours")["PSNR"] == 17.01


# ----------------------------------------------------------------------------------------------- provenance
def test_every_number_is_on_its_cited_seed_line():
    seeds = {k: glob.glob(str(SEED_DIR / f"{k}_*.txt")) for k in ("000", "001", "002", "003")}
    if not all(seeds[k] for k in ("000", "001", "003")):
        pytest.skip("seed texts not available")
    lines = {k: Path(v[0]).read_text(encoding="utf-8").split("\n") for k, v in seeds.items() if v}
    rows = [r for p in yaml.safe_load(YAML_PATH.read_text(encoding="utf-8"))["papers"]
            for t in p["tables"] for r in t["rows"]]
    refs = [ln for ln in YAML_PATH.read_text(encoding="utf-8").split("\n")
            if ln.lstrip().startswith("metrics:")]
    assert len(refs) == len(rows)
    for row, ref in zip(rows, refs):
        m = re.search(r"# seed (\d{3}):([\d,]+)\s*$", ref)
        assert m, f"no seed reference on: {ref.strip()}"
        text = " ".join(lines[m.group(1)][int(n) - 1] for n in m.group(2).split(","))
        printed = {float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)}
        for metric, value in row["metrics"].items():
            assert any(abs(value - x) < 1e-9 for x in printed), (row["method"], metric, value, ref.strip())
