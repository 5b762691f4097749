"""Kaldi data directories, audio reading (files, pipes, segments), chunk sampling."""
