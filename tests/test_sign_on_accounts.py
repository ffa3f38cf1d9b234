"""Who a single sign-on is (chat/sso/accounts.py): the user found by the
provider's subject, a new one's username, the groups the provider gives. The
whole sign-in against a real provider is tests/test_sign_on.py."""

import pytest
from django.contrib.auth.models import Group, User

from chat.models import SignOnIdentity
from chat.sso import accounts

pytestmark = pytest.mark.django_db

ISSUER = "https://id.example.com"


@pytest.fixture(autouse=True)
def sign_on(settings):
    settings.OIDC_ISSUER = ISSUER
    settings.OIDC_USERNAME_CLAIM = "preferred_username"
    settings.OIDC_GROUPS_CLAIM = "groups"
    settings.OIDC_GROUPS_PREFIX = ""


def _groups(user) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def test_it_names_a_new_user_from_the_claim_else_the_email_else_the_subject():
    assert accounts.unique_username({"sub": "1", "preferred_username": "carol", "email": "c@x.org"}) == "carol"
    assert accounts.unique_username({"sub": "1", "email": "c@x.org"}) == "c@x.org"
    assert accounts.unique_username({"sub": "a1b2"}) == "a1b2"
    # Only what a username may hold, and never empty.
    assert accounts.unique_username({"sub": "1", "preferred_username": "Carol Smith <x>"}) == "CarolSmithx"
    assert accounts.unique_username({"sub": "1", "preferred_username": "?!"}) == "user"


def test_it_numbers_a_username_another_user_has():
    User.objects.create_user("Carol")
    User.objects.create_user("carol-2")
    assert accounts.unique_username({"sub": "1", "preferred_username": "carol"}) == "carol-3"


def test_a_user_is_found_by_issuer_and_subject_only(alice):
    carol = accounts.create_user({"sub": "s-1", "preferred_username": "carol", "email": "alice@example.com"})
    assert not carol.has_usable_password()
    assert accounts.find_user("s-1") == carol
    assert accounts.find_user("s-2") is None
    # Another provider's subject "s-1" is someone else.
    SignOnIdentity.objects.filter(user=carol).update(issuer="https://other.example.com")
    assert accounts.find_user("s-1") is None


def test_the_providers_groups_replace_the_users_groups(alice):
    Group.objects.create(name="old")
    alice.groups.add(Group.objects.get(name="old"))
    accounts.set_groups(alice, {"groups": ["sales", "support", 7, "x" * 151]})
    assert _groups(alice) == {"sales", "support"}
    accounts.set_groups(alice, {"groups": "support"})
    assert _groups(alice) == {"support"}
    # A provider that sends no groups claim lists none.
    accounts.set_groups(alice, {})
    assert _groups(alice) == set()
    assert set(Group.objects.values_list("name", flat=True)) == {"old", "sales", "support"}


def test_with_a_prefix_only_its_groups_are_the_providers(alice, settings):
    settings.OIDC_GROUPS_PREFIX = "chat-"
    alice.groups.add(Group.objects.create(name="reviewers"), Group.objects.create(name="chat-old"))
    accounts.set_groups(alice, {"groups": ["chat-staff", "sales"]})
    assert _groups(alice) == {"chat-staff", "reviewers"}
    assert not Group.objects.filter(name="sales").exists()


def test_without_a_groups_claim_groups_are_left_to_staff(alice, settings):
    settings.OIDC_GROUPS_CLAIM = ""
    alice.groups.add(Group.objects.create(name="reviewers"))
    accounts.update_user(alice, {"sub": "1", "email": "alice@new.example.com", "groups": ["sales"]})
    assert _groups(alice) == {"reviewers"}
    alice.refresh_from_db()
    assert alice.email == "alice@new.example.com"
