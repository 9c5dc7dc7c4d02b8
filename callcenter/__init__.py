"""callcenter"""
