"""Acquisition methods: each file holds a task module and/or a Selector, wired by conf/method/."""
