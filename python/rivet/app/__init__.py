"""Commands over many exports: fan-out, plan files, apply, repair, doctor, discover, preflight, notifications."""
