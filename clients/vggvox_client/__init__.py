"""vggvox-client: enrollment, replay and the offline evaluation modes."""
