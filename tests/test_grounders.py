"""The grounder port: every grounding mode by name, one class each; rows -> LLM groups per mode."""

from __future__ import annotations

import dataclasses

import pytest

from urllm.configuration import ConfigError
from urllm.grounding.config import GroundingConfig
from urllm.grounding.refiner import Grounded
from urllm.infer.grounders import GROUNDERS, Grounder, grounder_class, make_grounder
from urllm.infer.variants import SYSTEM_NAMES, run_settings, variant_for

MODES = ("rank", "rerank", "constrained", "free", "exact")


def test_every_mode_is_reachable_by_name():
    assert set(GROUNDERS) == set(MODES)
    fields = {f.name for f in dataclasses.fields(GroundingConfig)}
    for name in MODES:
        g = make_grounder(name, GroundingConfig())
        assert isinstance(g, Grounder) and type(g) is grounder_class(name) and g.name == name
        assert g.run in GROUNDERS and set(g.settings) <= fields
    assert len({grounder_class(m) for m in MODES}) == len(MODES)  # one class each
    for mode in ("rank", "rerank", "constrained", "free"):  # every grounding.mode of the config
        assert grounder_class(mode).run == mode


def test_an_unknown_mode_is_a_one_line_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        make_grounder("beam", GroundingConfig())
    assert str(err.value).startswith("grounding.mode: unknown grounding mode 'beam'; known: rank, ")
    assert "\n" not in str(err.value)


def test_every_llm_system_reads_a_run_its_grounder_belongs_to():
    for name in SYSTEM_NAMES:
        v = variant_for(name, "rank")
        assert grounder_class(v.grounding).run == v.mode, name
    assert variant_for("urllm-no-grounding", "rank").grounding == "exact"
    assert variant_for("urllm-no-grounding", "rank").run_name == variant_for("urllm-free", "rank").run_name


def _generated_row() -> dict:
    grounded = [
        Grounded("pen", "exact", -1.0, (3,), ()),
        Grounded("a pen-like thing", "bm25", -2.0, (4, 5), ()),
        Grounded("", "empty", -3.0, (), ()),
    ]
    return {
        "outputs": [{"text": g.text, "score": g.score} for g in grounded],
        "grounded": [g.to_dict() for g in grounded],
    }


def test_generating_modes_keep_matched_outputs_and_exact_keeps_titles_only():
    row = _generated_row()
    for mode in ("free", "constrained"):
        groups, scores, used = make_grounder(mode, GroundingConfig()).groups(row)
        assert (
            groups == [(3,), (4, 5)]
            and scores == [-1.0, -2.0]
            and [u.method for u in used]
            == [
                "exact",
                "bm25",
            ]
        )
    groups, scores, used = make_grounder("exact", GroundingConfig()).groups(row)
    assert groups == [(3,)] and scores == [-1.0] and used[0].method == "exact"


def test_list_modes_score_every_candidate():
    rank = make_grounder("rank", GroundingConfig())
    groups, scores, used = rank.groups({"candidates": [7, 2], "label_logprobs": [-0.5, -1.5]})
    assert groups == [(7,), (2,)] and scores == [-0.5, -1.5] and all(u.method == "candidate" for u in used)
    rerank = make_grounder("rerank", dataclasses.replace(GroundingConfig(), rerank_length_norm="mean"))
    groups, scores, _ = rerank.groups(
        {"candidates": [7, 2], "candidate_scores": [-4.0, -3.0], "candidate_tokens": [2, 1]}
    )
    assert groups == [(7,), (2,)] and scores == pytest.approx([-2.0, -3.0])


def test_run_settings_are_the_modes_fields(tmp_path):
    from urllm.config import load_config
    from urllm.infer.variants import Variant
    from urllm.systems import infer_setup

    setup = infer_setup(load_config(None, [f"run_dir={tmp_path}"]))
    for mode in ("rank", "rerank", "constrained", "free"):
        settings = run_settings(setup, Variant(mode), None, None)
        assert set(settings["grounding"]) == set(grounder_class(mode).settings)
