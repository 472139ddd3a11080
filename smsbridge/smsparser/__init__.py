"""smsparser"""
