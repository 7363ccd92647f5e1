"""Ground floor: messages as bytes and text, shared by store, auth, queue and
the protocols.  Imports nothing from xmail except xmail.addresses.

mime.py     parse_message: MIME structure with byte offsets, ENVELOPE and
            BODYSTRUCTURE ingredients, decoded headers, the SEARCH text digest
headers.py  the one header-section reader, RFC 2047 words, RFC 2045/2231 params
address.py  the one address-list grammar (ENVELOPE, submission's From check,
            SEARCH FROM/TO/CC/BCC)
subject.py  RFC 5256 base subject (SORT, THREAD)
text.py     transfer decoding and HTML to text for SEARCH, linear time
mutf7.py    the one modified UTF-7 codec (IMAP names, Maildir++ directories)
dotstuff.py dot-stuffing for POP3 responses and the outbound DATA stream

Every pass over message text is linear (or bounded per part); lists grown
from message data are capped (fields, addresses, parts, References).
"""

from xmail.message.address import MISSING_HOST, mailboxes, parse_address_list, searchable
from xmail.message.headers import (
    HeaderSection,
    codec_for,
    decode_header_bytes,
    decode_words,
    header_fields,
    param,
    parse_content_type,
    parse_disposition,
    parse_params,
    scan_header_section,
)
from xmail.message.mime import (
    ADDRESS_FIELDS,
    DECODED_FIELDS,
    ENVELOPE_FIELDS,
    MAX_DEPTH,
    MAX_PARTS,
    MAX_REFERENCES,
    STRUCTURE_VERSION,
    TEXT_DIGEST_LIMIT,
    MessageMeta,
    bounded_references,
    extract_text,
    fallback_meta,
    parse_date_field,
    parse_message,
    sort_keys,
    split_multipart,
)
from xmail.message.subject import base_subject
from xmail.message.text import decode_transfer, html_to_text

__all__ = [
    "ADDRESS_FIELDS", "DECODED_FIELDS", "ENVELOPE_FIELDS", "MAX_DEPTH", "MAX_PARTS",
    "MAX_REFERENCES", "MISSING_HOST", "STRUCTURE_VERSION", "TEXT_DIGEST_LIMIT", "HeaderSection",
    "MessageMeta", "base_subject", "bounded_references", "codec_for", "decode_header_bytes",
    "decode_transfer", "decode_words", "extract_text", "fallback_meta", "header_fields",
    "html_to_text", "mailboxes", "param", "parse_address_list", "parse_content_type",
    "parse_date_field", "parse_disposition", "parse_message", "parse_params",
    "scan_header_section", "searchable", "sort_keys", "split_multipart",
]
