"""benchmarks/bench_api.py on the tiny models: POST to final image through the real app."""

from pathlib import Path


def test_post_to_image_through_the_embedded_worker(scripts, tmp_path: Path):
    data = scripts("bench_api").api_end_to_end(
        tmp_path, "tiny", "cpu", size=32, iterations=2, cutn=2
    )
    assert (data["size"], data["iterations"], data["cutn"]) == (32, 2, 2)
    assert data["post_to_image_seconds"] > 0 and data["ready_seconds"] >= 0
    assert data["ms_per_iteration_including_service"] == (data["post_to_image_seconds"] * 1000 / 2)
    # The jobs ran for real: their records and images are in the service's data dir.
    assert len(list(tmp_path.rglob("*.png"))) >= 2


def test_the_gpu_suite_finds_the_moved_parts(scripts):
    suite = scripts("gpu_suite")
    assert suite.check_agreement is scripts("bench_agreement").check_agreement
    assert suite.api_end_to_end is scripts("bench_api").api_end_to_end
    assert suite.profile_steps is scripts("bench_profile").profile_steps
    assert suite.plan(True)["model"] == "tiny"
