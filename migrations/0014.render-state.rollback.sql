DROP TABLE render_state;
