"""smsparser/js"""
