"""The user a sign-in is: found by the provider's subject, created at the first
sign-in with a username from a claim, and given the groups the provider lists."""

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from chat.models import SignOnIdentity

User = get_user_model()

# What Django's username validator allows, and the longest name a group may have.
NOT_IN_USERNAME = re.compile(r"[^\w.@+-]")
USERNAME_LENGTH = User._meta.get_field("username").max_length
GROUP_LENGTH = Group._meta.get_field("name").max_length


def find_user(subject: str):
    """The user of the provider's `subject`, or None before their first sign-in."""
    return User.objects.filter(
        sign_on_identities__issuer=settings.OIDC_ISSUER, sign_on_identities__subject=subject
    ).first()


def create_user(claims: dict):
    """A new user for a first sign-in, with an unusable password and their identity."""
    with transaction.atomic():
        user = User.objects.create_user(unique_username(claims), email=claims.get("email") or "")
        SignOnIdentity.objects.create(user=user, issuer=settings.OIDC_ISSUER, subject=claims["sub"])
    return user


def unique_username(claims: dict) -> str:
    """The username claim (else the email, else the subject), in the characters a
    username may have, with a number after it when another user has it already."""
    wanted = claims.get(settings.OIDC_USERNAME_CLAIM) or claims.get("email") or claims["sub"]
    base = NOT_IN_USERNAME.sub("", str(wanted))[: USERNAME_LENGTH - 8] or "user"
    username, number = base, 1
    while User.objects.filter(username__iexact=username).exists():
        number += 1
        username = f"{base}-{number}"
    return username


def update_user(user, claims: dict):
    """What the provider says of a returning user: their email and groups."""
    email = claims.get("email") or ""
    if email != user.email:
        user.email = email
        user.save(update_fields=["email"])
    set_groups(user, claims)
    return user


def groups_in(claims: dict) -> set[str] | None:
    """The groups the provider lists for the user, those with OIDC_GROUPS_PREFIX if
    it is set; None when no OIDC_GROUPS_CLAIM maps them. A missing claim lists none."""
    if not settings.OIDC_GROUPS_CLAIM:
        return None
    listed = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(listed, str):
        listed = [listed]
    return {
        name
        for name in listed
        if isinstance(name, str) and name.startswith(settings.OIDC_GROUPS_PREFIX) and 0 < len(name) <= GROUP_LENGTH
    }


def set_groups(user, claims: dict) -> None:
    """The user's groups become those the provider lists, created as needed. With
    OIDC_GROUPS_PREFIX only groups with that prefix are the provider's to give and
    take: others, given by staff in the admin, stay."""
    names = groups_in(claims)
    if names is None:
        return
    with transaction.atomic():
        groups = [Group.objects.get_or_create(name=name)[0] for name in sorted(names)]
        managed = user.groups.filter(name__startswith=settings.OIDC_GROUPS_PREFIX)
        user.groups.remove(*managed.exclude(name__in=names))
        user.groups.add(*groups)
