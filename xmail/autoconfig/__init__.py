"""Client auto-configuration documents (issue #7), free of Twisted.

model.py turns the settings into the servers clients should use and checks
addresses; thunderbird.py, autodiscover.py, mobileconfig.py, dnszone.py and
page.py each build one document from that; xmail.protocols.http serves them.
"""
