"""The models dir: broken manifests are listed as failed with a reason, the rest still serves."""
from conftest import assert_error


def test_bad_manifests_fail_alone(make_server):
    s = make_server("manifests")
    s.add_model("good", parallel=3, max_queue=7, description="the one that works")
    (s.models_dir / "syntax.toml").write_text('id = "syntax"\nbackend = \n')
    s.add_model("nobackend", backend="quantum")
    s.add_model("badtype", type="embedding")
    s.add_model("badparallel", parallel=0)
    s.add_model("unknownkey", colour="blue")
    s.add_model("good", filename="zz-duplicate.toml")
    (s.models_dir / "README.md").write_text("not a manifest: ignored\n")
    s.start()

    models = s.models()
    good = models["good"]
    assert good["state"] == "ready" and good["parallel"] == 3 and good["max_queue"] == 7
    assert good["description"] == "the one that works"
    failed = {id: m["reason"] for id, m in models.items() if m["state"] == "failed"}
    assert set(models) == {"good", "syntax", "nobackend", "badtype", "badparallel", "unknownkey",
                           "good@zz-duplicate.toml"}, set(models)
    assert set(failed) == set(models) - {"good"}, failed
    assert "syntax.toml" in failed["syntax"] and "line 2" in failed["syntax"], failed["syntax"]
    assert "unknown backend 'quantum'" in failed["nobackend"] and "echo" in failed["nobackend"]
    assert "no job type 'embedding'" in failed["badtype"]
    assert "'parallel' must be an integer in 1..256" in failed["badparallel"]
    assert "unknown key 'colour'" in failed["unknownkey"]
    assert "duplicate model id 'good'" in failed["good@zz-duplicate.toml"]

    assert_error(s.submit_raw("nobackend", "x"), 503, "model_unavailable", "unknown backend 'quantum'")
    assert s.wait_job(s.submit("good", "works")["id"])["result"]["text"] == "works"


def test_empty_models_dir(make_server):
    s = make_server("nomodels")
    s.start(wait_models=[])
    assert s.get("/models").json() == {"models": []}
    assert_error(s.submit_raw("echo", "x"), 404, "model_not_found", "unknown model 'echo'")
    assert s.get("/healthz").json() == {"status": "ok"}
