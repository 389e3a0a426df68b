"""vggvoxd: the real-time speaker identification daemon."""
