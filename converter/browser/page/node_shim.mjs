// Node built-ins that browser builds import but only use under Node (see runner.html's import map).
export default {};
export const performance = globalThis.performance;
