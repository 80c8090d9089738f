import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from access.fields import decrypt, encrypt


def test_it_encrypts_so_the_stored_text_does_not_contain_the_secret(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    token = encrypt("s3cr3t-client-secret")
    assert "s3cr3t" not in token
    assert decrypt(token) == "s3cr3t-client-secret"


def test_it_decrypts_with_an_older_key_after_rotation(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    token = encrypt("value")
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert decrypt(token) == "value"


def test_it_names_the_setting_when_the_key_is_gone(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    token = encrypt("value")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"):
        decrypt(token)


def test_it_refuses_a_malformed_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="Fernet keys"):
        encrypt("value")
