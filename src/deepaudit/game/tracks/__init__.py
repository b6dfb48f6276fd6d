"""The scored tracks, one file each (detect, target, trigger, inputs, latent, remove, localize,
edit, forecast, reverse; verdict, derived from detect). Adding a track: a file here with a ``Track`` subclass registered by
``@register_track`` (``base.py`` says what a track declares)."""

from deepaudit.game.tracks.base import TRACKS, Column, Track, register_track, tracks_for

__all__ = ["TRACKS", "Column", "Track", "register_track", "tracks_for"]
