"""LocalStack's Python SDK (`localstack-sdk-python` from PyPI, unmodified) against cryopod.

Run by `tests/tests/localstack.rs`, which starts the emulator and sets `CRYOPOD_ENDPOINT`.
State is changed and read with plain S3 requests (a bucket per name), so nothing but the
SDK and the standard library is needed.
"""

import re
import urllib.request

from localstack.sdk.pods import PodsClient
from localstack.sdk.state import StateClient
from localstack.sdk.testing import cloudpods

from conftest import ENDPOINT


def _request(method, path):
    req = urllib.request.Request(ENDPOINT + path, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read().decode()


def create_bucket(name):
    status, _ = _request("PUT", "/" + name)
    assert status == 200


def buckets():
    _, text = _request("GET", "/")
    return sorted(re.findall(r"<Name>([^<]+)</Name>", text))


def pod_names(client):
    return [p.pod_name for p in client.list_pods().cloudpods]


def test_pods_client_saves_lists_loads_and_deletes():
    StateClient().reset_state()
    create_bucket("before-save")
    pods = PodsClient()
    pods.save_pod("p")
    assert "p" in pod_names(pods)
    listed = [p for p in pods.list_pods().cloudpods if p.pod_name == "p"][0]
    assert listed.max_version == 1

    create_bucket("after-save")
    assert buckets() == ["after-save", "before-save"]
    pods.load_pod("p")
    assert buckets() == ["before-save"], "loading the pod undid the change"

    pods.delete_pod("p")
    assert "p" not in pod_names(pods)


def test_state_client_resets_everything():
    create_bucket("doomed")
    assert "doomed" in buckets()
    StateClient().reset_state()
    assert buckets() == []


def test_loading_an_unknown_pod_is_an_error():
    pods = PodsClient()
    try:
        pods.load_pod("never-saved")
    except Exception as e:  # the SDK raises its ApiException (404) or PodLoadException
        assert "404" in str(e) or "never-saved" in str(e), e
    else:
        raise AssertionError("loading an unknown pod succeeded")


def test_cloudpods_decorator_loads_the_pod_and_resets_afterwards():
    StateClient().reset_state()
    create_bucket("fixture-bucket")
    PodsClient().save_pod("fixture")
    StateClient().reset_state()
    assert buckets() == []

    seen = []

    @cloudpods(name="fixture")
    def decorated_test():
        seen.append(buckets())
        return "ran"

    assert decorated_test() == "ran"
    assert seen == [["fixture-bucket"]], "the pod was loaded before the test"
    assert buckets() == [], "the state was reset after the test"
    PodsClient().delete_pod("fixture")
