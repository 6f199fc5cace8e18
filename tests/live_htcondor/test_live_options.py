"""Map options as the live schedd sees them: custom options' types, Kerberos credentials."""
from __future__ import annotations

import os

import htcondor2
import pytest

import htmap
from tests import funcs

from .conftest import job_ads


def test_custom_options_reach_the_job_ad_as_classad_expressions():
    m = htmap.map(funcs.sleep_then, [1], map_options=htmap.MapOptions(
        custom_options={"MY.SendCredential": "true", "JobFlavour": '"espresso"', "+Answer": "42",
                        "Ratio": 0.25, "Twice": "RequestCpus * 2"}))
    m.hold()
    [ad] = job_ads(m, ["SendCredential", "JobFlavour", "Answer", "Ratio", "Twice"])
    assert not isinstance(ad["Twice"], str)
    assert ad["SendCredential"] is True
    assert ad["JobFlavour"] == "espresso" and ad["Answer"] == 42 and ad["Ratio"] == 0.25
    assert str(ad["Twice"]) == "RequestCpus * 2"  # an expression, not a string


def queued_jobs(tag: str) -> int:
    return len(htcondor2.Schedd().query(f'JobBatchName == "{tag}"', ["ClusterId"]))


def test_a_custom_option_that_does_not_parse_is_refused_before_anything_is_queued():
    with pytest.raises(htmap.exceptions.InvalidOption, match="JobFlavour"):
        htmap.map(funcs.double, [1], tag="refused-option",
                  map_options=htmap.MapOptions(custom_options={"JobFlavour": "espresso please"}))
    assert htmap.get_tags() == ()
    assert queued_jobs("refused-option") == 0


def read_credential_file(_):
    import os
    return open(os.environ["KRB5CCNAME"].split(":", 1)[-1]).read()


def forget_credential():
    htcondor2.Credd().delete_user_cred(htcondor2.CredType.Kerberos)


@pytest.mark.parametrize("how", ["setting", "custom_option"])
def test_kerberos_credential_is_stored_by_htmap_and_reaches_the_job(how):
    forget_credential()
    if how == "setting":
        htmap.settings["HTCONDOR.CREDENTIALS"] = "kerberos"
        options = htmap.MapOptions()
    else:  # the seed's recipe, without its Credd().add_user_cred by hand
        options = htmap.MapOptions(custom_options={"MY.SendCredential": "true"})
    m = htmap.map(read_credential_file, [0], map_options=options)
    assert m.get(0, timeout=120).strip() == f"fake-krb5-credential-for-{os.environ['USER']}"


def test_no_kerberos_ticket_is_a_clear_error_before_submit(monkeypatch):
    forget_credential()
    monkeypatch.setenv("FAKE_KRB5_NO_TICKET", "1")  # the producer fails as for a user without a ticket
    htmap.settings["HTCONDOR.CREDENTIALS"] = "kerberos"
    with pytest.raises(htmap.exceptions.HTMapException, match="kinit"):
        htmap.map(read_credential_file, [0], tag="refused-credential")
    assert htmap.get_tags() == ()
    assert queued_jobs("refused-credential") == 0
